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
