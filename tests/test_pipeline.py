"""pipeline("sentiment-analysis") against transformers' pipeline on the same files."""

import shutil

import datasets
import ferrotune
import pytest
import torch
import transformers
from test_models import DEBERTA_V3

TEXTS = [
    "Me encantó, llegó a tiempo",
    "¿Funciona? ¡No! 😡 http://t.co/abc",
    "",
    "   ",
    "I can't see how automous cars won't cause a mess",
    "ok",
]


@pytest.fixture(
    scope="module", params=["bert", "roberta", "electra", "modernbert", "deberta-v2", "minilm"]
)
def classifier_dir(request, tmp_path_factory, minilm_dir, roberta_dir):
    """A folder with a seeded classifier (3 labels) and its tokenizer (DeBERTa-v2's: its
    SentencePiece `spm.model` alone, as deberta-v3 ships it)."""
    folder = tmp_path_factory.mktemp(f"pipe-{request.param}")
    torch.manual_seed(0)
    labels = {"id2label": {0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}}
    if request.param == "minilm":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            minilm_dir, num_labels=3, **labels
        )
        tokenizer_dir = minilm_dir
    else:
        tokenizer_dir = roberta_dir if request.param in ("roberta", "modernbert") else minilm_dir
        if request.param == "deberta-v2":
            tokenizer_dir = request.getfixturevalue("sentencepiece_dirs")["deberta-v2"]
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
        vocab = len(tokenizer)
        positions = {"roberta": 66}.get(request.param, 512)
        if request.param == "electra":
            labels["embedding_size"] = 16
        if request.param == "modernbert":  # a global and a sliding layer, its tokenizer's ids
            labels.update(
                local_attention=8,
                global_attn_every_n_layers=2,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                cls_token_id=tokenizer.cls_token_id,
                sep_token_id=tokenizer.sep_token_id,
            )
        if request.param == "deberta-v2":  # DeBERTa-v3's settings, no token types
            labels.update(DEBERTA_V3)
        config = transformers.AutoConfig.for_model(
            request.param,
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=positions,
            initializer_range=0.5,
            **labels,
        )
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder)
    for f in tokenizer_dir.iterdir():
        if f.is_file() and f.name != "config.json" and not f.name.endswith(".safetensors"):
            shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="module")
def both(classifier_dir):
    return (
        transformers.pipeline("sentiment-analysis", model=str(classifier_dir)),
        ferrotune.pipeline("sentiment-analysis", model=str(classifier_dir)),
    )


def assert_same(expected, got):
    if isinstance(expected, dict):
        assert got["label"] == expected["label"]
        assert got["score"] == pytest.approx(expected["score"], abs=1e-5)
    else:
        assert isinstance(got, list) and len(got) == len(expected)
        for e, g in zip(expected, got):
            assert_same(e, g)


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p(TEXTS[0]),
        lambda p: p(TEXTS),
        lambda p: p(TEXTS, top_k=None),
        lambda p: p(TEXTS, top_k=2),
        lambda p: p(TEXTS[1], top_k=1),
        lambda p: p(TEXTS, function_to_apply="sigmoid"),
        lambda p: p(TEXTS, function_to_apply="none"),
        lambda p: p({"text": TEXTS[0], "text_pair": TEXTS[1]}),
        lambda p: p([{"text": TEXTS[0], "text_pair": TEXTS[1]}, {"text": "a", "text_pair": "b"}]),
        lambda p: p(["long text " * 300], truncation=True),
    ],
)
def test_outputs_equal_transformers(both, call):
    theirs, ours = both
    assert_same(call(theirs), call(ours))


@pytest.mark.slow
def test_tweets_in_any_batching_equal_transformers(both, tweets):
    theirs, ours = both
    texts = tweets.text.tolist()[:300]
    expected = theirs(texts, truncation=True, batch_size=16)
    assert_same(expected, ours(texts, truncation=True))
    ours.batch_size = 7
    assert_same(expected, ours(texts, truncation=True))
    ours.batch_size = None


def test_objects_generators_and_dataset_columns(classifier_dir):
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(classifier_dir)
    tokenizer = ferrotune.AutoTokenizer.from_pretrained(classifier_dir)
    pipe = ferrotune.pipeline("text-classification", model=model, tokenizer=tokenizer)
    expected = pipe(TEXTS)
    generated = pipe(t for t in TEXTS)
    assert not isinstance(generated, list)
    assert list(generated) == expected
    column = datasets.Dataset.from_dict({"text": TEXTS})["text"]
    assert pipe(column) == expected
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(classifier_dir)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(classifier_dir)
    assert_same(
        expected,
        ferrotune.pipeline("text-classification", model=hf_model, tokenizer=hf_tokenizer)(TEXTS),
    )
    assert pipe([]) == []


def test_bad_input(classifier_dir, both):
    theirs, pipe = both
    with pytest.raises(TypeError, match="text at index 1 is None, expected str"):
        pipe(["fine", None])
    with pytest.raises(TypeError, match="text at index 0 has type int, expected str"):
        pipe([3])
    if classifier_dir.name.startswith("pipe-deberta-v2"):
        # Relative positions only: any length runs, as in transformers.
        assert_same(theirs(["short", "long text " * 600]), pipe(["short", "long text " * 600]))
    else:
        with pytest.raises(
            ValueError,
            match=r"input 1 has \d+ tokens, more than the model's maximum "
            r"of \d+; pass truncation=True",
        ):
            pipe(["short", "long text " * 600])
    with pytest.raises(
        ValueError,
        match=r"Unknown task summarization, available tasks are "
        r"\['sentiment-analysis', 'text-classification', 'ner', 'token-classification', "
        r"'fill-mask'\]",
    ):
        ferrotune.pipeline("summarization", model=str(classifier_dir))
    with pytest.raises(
        ValueError,
        match="The pipeline received invalid inputs, if you are trying to send text pairs",
    ):
        pipe([["a", "b"]])
    with pytest.raises(ValueError, match="Unrecognized `function_to_apply` argument: relu"):
        pipe("x", function_to_apply="relu")
    with pytest.raises(ValueError, match="no CUDA device"):
        if not torch.cuda.is_available():
            ferrotune.pipeline("text-classification", model=str(classifier_dir), device=0)
        else:
            raise ValueError("no CUDA device (skipped: this machine has one)")
