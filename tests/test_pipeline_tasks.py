"""pipeline("ner") / pipeline("token-classification") and pipeline("fill-mask") against
transformers' pipelines on tiny random models, with WordPiece (BERT), byte-level BPE (RoBERTa)
and SentencePiece (XLM-RoBERTa, DeBERTa-v2) tokenizers."""

import warnings

import ferrotune
import pytest
import torch
import transformers
from ferrotune import _core

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC"]
STRATEGIES = ["none", "simple", "first", "average", "max"]
TEXTS = [
    "John Smith lives in New York and works for Microsoft.",
    "Me encantó, llegó a tiempo: ¡Müller-Lüdenscheidt! ☃ unbelievably",
    "",
    "   spaces   everywhere  ",
    "I can't see how automous cars won't cause a mess",
    "ok",
]


@pytest.fixture(scope="module", params=["minilm", "roberta", "xlm-roberta-hub", "deberta-v2"])
def tokenizers_pair(request, minilm_dir, roberta_dir):
    """(transformers', ferrotune's) tokenizer of one folder."""
    if request.param in ("minilm", "roberta"):
        folder = {"minilm": minilm_dir, "roberta": roberta_dir}[request.param]
    else:
        folder = request.getfixturevalue("sentencepiece_dirs")[request.param]
    return (
        transformers.AutoTokenizer.from_pretrained(folder),
        ferrotune.AutoTokenizer.from_pretrained(folder),
    )


def tiny_token_classifier(vocab_size: int) -> transformers.PreTrainedModel:
    """A seeded tiny BERT token classifier over LABELS; large initial weights make decided,
    varied predictions."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=512,
        initializer_range=0.5,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    return transformers.BertForTokenClassification(config).eval()


def plain(entities: list) -> list:
    """Entities with float scores (transformers' are numpy float32)."""
    return [{**e, "score": float(e["score"])} for e in entities]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_postprocessing_of_the_same_logits_equals_transformers(tokenizers_pair, strategy):
    """The Rust post-processing (softmax, subwords, aggregation, grouping) on transformers'
    logits gives transformers' entities, scores to the bit."""
    theirs, ours = tokenizers_pair
    model = tiny_token_classifier(len(theirs))
    reference = transformers.pipeline(
        "ner", model=model, tokenizer=theirs, aggregation_strategy=strategy
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = reference(TEXTS)
    reference_warned = any("fallback heuristic" in str(w.message) for w in caught)
    with torch.no_grad():
        logits = [
            model(**theirs(text, truncation=True, return_tensors="pt")).logits[0] for text in TEXTS
        ]
    got, warned = _core.token_entities(
        ours._core, TEXTS, logits, LABELS, aggregation_strategy=strategy, ignore_labels=["O"]
    )
    assert [plain(e) for e in expected] == got
    assert warned == reference_warned
    assert any(expected), "the tiny model should find some entities"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["none", "first", "average"])
def test_postprocessing_of_tweets_equals_transformers(tokenizers_pair, tweets, strategy):
    theirs, ours = tokenizers_pair
    texts = tweets.text.tolist()[:80]
    model = tiny_token_classifier(len(theirs))
    reference = transformers.pipeline(
        "ner", model=model, tokenizer=theirs, aggregation_strategy=strategy
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = reference(texts)
    with torch.no_grad():
        logits = [
            model(**theirs(text, truncation=True, return_tensors="pt")).logits[0] for text in texts
        ]
    got, _ = _core.token_entities(ours._core, texts, logits, LABELS, strategy)
    assert [plain(e) for e in expected] == got


def test_ignore_labels_and_labels_without_a_prefix(tokenizers_pair):
    theirs, ours = tokenizers_pair
    model = tiny_token_classifier(len(theirs))
    reference = transformers.pipeline("ner", model=model, tokenizer=theirs)
    with torch.no_grad():
        logits = [model(**theirs(t, return_tensors="pt")).logits[0] for t in TEXTS[:2]]
    for strategy, ignore in [("none", []), ("simple", ["MISC", "O"]), ("max", ["PER"])]:
        expected = reference(TEXTS[:2], aggregation_strategy=strategy, ignore_labels=ignore)
        got, _ = _core.token_entities(ours._core, TEXTS[:2], logits, LABELS, strategy, ignore)
        assert [plain(e) for e in expected] == got


def test_bad_strategy_and_mismatched_logits_are_named(tokenizers_pair):
    _, ours = tokenizers_pair
    logits = [torch.zeros(3, len(LABELS))]
    with pytest.raises(ValueError, match="'longest'|\"longest\""):
        _core.token_entities(ours._core, ["a b"], logits, LABELS, "longest")
    with pytest.raises(ValueError, match="input 0"):
        _core.token_entities(ours._core, ["a much longer text here"], logits, LABELS, "simple")
    with pytest.raises(ValueError, match="1 logits tensors for 2 texts"):
        _core.token_entities(ours._core, ["a", "b"], logits, LABELS, "simple")


def test_fill_mask_targets_equal_transformers(tokenizers_pair, caplog):
    theirs, ours = tokenizers_pair
    if theirs.mask_token is None:
        pytest.skip("this tokenizer has no mask token")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(theirs),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=37,
    )
    reference = transformers.pipeline(
        "fill-mask", model=transformers.BertForMaskedLM(config).eval(), tokenizer=theirs
    )
    vocab = list(theirs.get_vocab())
    targets = [vocab[5], vocab[100], vocab[5], "zzzqqqxx", "encantó"]
    expected = sorted(int(i) for i in reference.get_target_ids(targets))
    ids, messages = _core.fill_mask_targets(ours._core, targets)
    assert ids == expected
    assert any("zzzqqqxx" in m for m in messages)
    with pytest.raises(ValueError, match="At least one target"):
        _core.fill_mask_targets(ours._core, [])


# End to end: ferrotune's models and pipelines against transformers' on the same folders.

ARCHITECTURES = {  # model_type: its tokenizer folder
    "bert": "minilm",
    "roberta": "roberta",
    "xlm-roberta": "xlm-roberta-hub",
    "deberta-v2": "deberta-v2",
    "electra": "minilm",
}


def tokenizer_dir(request, name: str):
    if name in ("minilm", "roberta"):
        return request.getfixturevalue(f"{name}_dir")
    return request.getfixturevalue("sentencepiece_dirs")[name]


def save_tiny(request, tmp_path_factory, model_type: str, head: str) -> str:
    """A folder with a seeded tiny `model_type` model with the `head` class of transformers'
    Auto classes, and its tokenizer."""
    import shutil

    from test_models import DEBERTA_V3

    source = tokenizer_dir(request, ARCHITECTURES[model_type])
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    options = {
        "id2label": dict(enumerate(LABELS)),
        "label2id": {k: i for i, k in enumerate(LABELS)},
    }
    if model_type == "deberta-v2":
        options.update(DEBERTA_V3)
    if model_type == "electra":
        options["embedding_size"] = 16
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=512,
        initializer_range=0.5,
        pad_token_id=tokenizer.pad_token_id,
        **options,
    )
    model = getattr(transformers, head).from_config(config)
    folder = tmp_path_factory.mktemp(f"{head}-{model_type}")
    model.save_pretrained(folder)
    for f in source.iterdir():
        if f.is_file() and f.name != "config.json" and not f.name.endswith(".safetensors"):
            shutil.copy(f, folder / f.name)
    return str(folder)


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def ner_dir(request, tmp_path_factory):
    return save_tiny(request, tmp_path_factory, request.param, "AutoModelForTokenClassification")


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def mlm_dir(request, tmp_path_factory):
    return save_tiny(request, tmp_path_factory, request.param, "AutoModelForMaskedLM")


def assert_entities(expected: list, got: list):
    """Equal entities; scores to float32 rounding of the logits' last bits."""
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        if isinstance(e, list):
            assert_entities(e, g)
            continue
        assert type(g["score"]) is type(e["score"])
        assert {**g, "score": 0} == {**e, "score": 0}
        assert g["score"] == pytest.approx(e["score"], abs=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ner_pipeline_equals_transformers(ner_dir, strategy):
    theirs = transformers.pipeline("ner", model=ner_dir, aggregation_strategy=strategy)
    ours = ferrotune.pipeline("ner", model=ner_dir, aggregation_strategy=strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs(TEXTS)
        assert_entities(expected, ours(TEXTS))
        assert_entities(theirs(TEXTS[0]), ours(TEXTS[0]))
        assert_entities(theirs(TEXTS[:1]), ours(TEXTS[:1]))
        everything = theirs(TEXTS, ignore_labels=[])
        assert_entities(everything, ours(TEXTS, ignore_labels=[]))
    # Some random models predict "O" everywhere; without ignored labels the "O" tokens are
    # entities too, grouped by the strategy.
    assert any(everything)


def test_ner_pipeline_errors(ner_dir):
    ours = ferrotune.pipeline("token-classification", model=ner_dir)
    assert ours.task == "token-classification"
    with pytest.raises(ValueError, match="longest"):
        ours(TEXTS[0], aggregation_strategy="longest")
    with pytest.raises(TypeError, match="input 1 has type int"):
        ours(["a", 3])
    with pytest.raises(ValueError, match="At least one input"):
        ours([])
    with pytest.raises(NotImplementedError, match="stride"):
        ours(TEXTS[0], stride=4)


FILL = [
    "The capital of France is {mask}.",
    "{mask} {mask} lives in New York",
    "Me encantó, llegó a {mask}",
    "{mask}",
]


@pytest.mark.parametrize(
    "kwargs", [{}, {"top_k": 1}, {"top_k": 12}, {"top_k": 0}, {"targets": "TARGETS"}]
)
def test_fill_mask_pipeline_equals_transformers(mlm_dir, kwargs):
    theirs = transformers.pipeline("fill-mask", model=mlm_dir)
    ours = ferrotune.pipeline("fill-mask", model=mlm_dir)
    texts = [t.format(mask=theirs.tokenizer.mask_token) for t in FILL]
    if kwargs.get("targets") == "TARGETS":
        vocab = list(theirs.tokenizer.get_vocab())
        kwargs = {"targets": [vocab[7], vocab[50], "zzzqqqxx"], "top_k": 2}
    for inputs in (texts, texts[0], texts[1], texts[:1]):
        expected = theirs(inputs, **kwargs)
        assert_candidates(expected, ours(inputs, **kwargs))


def assert_candidates(expected, got):
    assert isinstance(got, list) and len(got) == len(expected)
    for e, g in zip(expected, got):
        if isinstance(e, list):
            assert_candidates(e, g)
            continue
        assert {**g, "score": 0} == {**e, "score": 0}
        assert g["score"] == pytest.approx(e["score"], abs=1e-5)


def test_fill_mask_errors_name_the_input(mlm_dir):
    ours = ferrotune.pipeline("fill-mask", model=mlm_dir)
    mask = ours.tokenizer.mask_token
    with pytest.raises(ValueError, match=r"No mask_token .* input 1: .no mask here."):
        ours([f"a {mask}", "no mask here"])
    with pytest.raises(ValueError, match="top_k"):
        ours(f"a {mask}", top_k=10**7)
    with pytest.raises(ValueError, match="top_k"):
        ours(f"a {mask}", top_k=-1)


def test_a_model_of_another_task_is_refused(tiny_bert_dir, minilm_dir):
    classifier = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    tokenizer = ferrotune.AutoTokenizer.from_pretrained(minilm_dir)
    with pytest.raises(ValueError, match="needs a token-classification model, got a sequence"):
        _core.token_classification(classifier._model, tokenizer._core, ["a"], ["A", "B"])
    with pytest.raises(ValueError, match="needs a masked-lm model, got a sequence"):
        _core.fill_mask(classifier._model, tokenizer._core, ["a [MASK]"])
