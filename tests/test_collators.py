"""DataCollatorForTokenClassification and DataCollatorForLanguageModeling against transformers'
collators: the same batches (and, under the same torch seed, the same masks)."""

import ferrotune
import numpy as np
import pytest
import torch
import transformers

TEXTS = [
    "Hugging Face is based in New York City",
    "ferrotune trains transformers",
    "a",
    "The quick brown fox jumps over the lazy dog, twice, in Paris and in Berlin.",
    "unknown ✨ emoji",
]


def features(tokenizer, texts=TEXTS, labels=True, **kwargs):
    enc = tokenizer(texts, **kwargs)
    rows = []
    for i in range(len(texts)):
        row = {k: enc[k][i] for k in enc.keys()}
        if labels:
            # Word-aligned tags as in the token-classification guide: -100 on special tokens.
            row["labels"] = [-100 if t is None else (t % 5) for t in enc.word_ids(i)]
        rows.append(row)
    return rows


def assert_same(ours, theirs):
    assert set(ours) == set(theirs), (list(ours), list(theirs))
    for key, value in theirs.items():
        mine = ours[key]
        assert type(mine) is type(value), key
        assert mine.dtype == value.dtype, key
        assert mine.shape == value.shape, key
        assert (np.asarray(mine) == np.asarray(value)).all(), (key, mine, value)


@pytest.fixture(scope="module")
def bert(minilm_dir):
    return (
        ferrotune.AutoTokenizer.from_pretrained(minilm_dir),
        transformers.AutoTokenizer.from_pretrained(minilm_dir),
    )


@pytest.mark.parametrize(
    "options",
    [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 40}],
)
@pytest.mark.parametrize(
    "label", [("label", 1), ("labels", 0.5), ("label_ids", [1, 0, 1]), (None, None)]
)
def test_padding_batches_are_transformers(ours, theirs, options, label):
    name, value = label
    rows = features(theirs, labels=False)
    if name is not None:
        rows = [r | {name: value} for r in rows]
    ours_out = ferrotune.DataCollatorWithPadding(ours, **options)(rows)
    theirs_out = transformers.DataCollatorWithPadding(theirs, **options)(rows)
    assert_same(ours_out, theirs_out)
    options["return_tensors"] = "np"
    np_out = ferrotune.DataCollatorWithPadding(ours, **options)(rows)
    assert_same(np_out, transformers.DataCollatorWithPadding(theirs, **options)(rows))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"pad_to_multiple_of": 8},
        {"label_pad_token_id": -1},
        {"padding": "max_length", "max_length": 40},
        {"return_tensors": "np"},
    ],
)
def test_token_classification_batches_are_transformers(ours, theirs, options):
    rows = features(theirs)
    ours_out = ferrotune.DataCollatorForTokenClassification(ours, **options)(rows)
    theirs_out = transformers.DataCollatorForTokenClassification(theirs, **options)(rows)
    assert_same(ours_out, theirs_out)


def test_token_classification_pads_left_and_takes_label_or_no_labels(bert):
    ours, theirs = bert
    rows = [
        {k: v for k, v in r.items() if k != "labels"} | {"label": r["labels"]}
        for r in features(theirs)
    ]
    for side in ("left", "right"):
        ours.padding_side = theirs.padding_side = side
        try:
            assert_same(
                ferrotune.DataCollatorForTokenClassification(ours)(rows),
                transformers.DataCollatorForTokenClassification(theirs)(rows),
            )
        finally:
            ours.padding_side = theirs.padding_side = "right"
    unlabeled = features(theirs, labels=False)
    assert_same(
        ferrotune.DataCollatorForTokenClassification(ours)(unlabeled),
        transformers.DataCollatorForTokenClassification(theirs)(unlabeled),
    )


def test_token_classification_errors_name_the_row(bert):
    ours, theirs = bert
    rows = features(theirs)
    rows[2]["labels"] = rows[2]["labels"] + [0]
    n = len(rows[2]["input_ids"])
    with pytest.raises(
        ValueError, match=f"labels at row 2 has {n + 1} values but input_ids has {n}"
    ):
        ferrotune.DataCollatorForTokenClassification(ours)(rows)
    with pytest.raises(NotImplementedError, match="padding=False"):
        ferrotune.DataCollatorForTokenClassification(ours, padding=False)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"mlm_probability": 0.5, "pad_to_multiple_of": 8},
        {"mask_replace_prob": 1.0, "random_replace_prob": 0.0},
        {"mask_replace_prob": 0.5, "random_replace_prob": 0.4},
        {"mlm": False},
    ],
)
def test_masks_are_transformers_under_the_same_seed(ours, theirs, options):
    if theirs.mask_token is None:
        pytest.skip("no mask token")
    rows = features(theirs, labels=False) * 3
    for with_mask in (False, True):
        batch = [
            {
                **r,
                "special_tokens_mask": theirs.get_special_tokens_mask(
                    r["input_ids"], already_has_special_tokens=True
                ),
            }
            if with_mask
            else r
            for r in rows
        ]
        torch.manual_seed(7)
        theirs_out = transformers.DataCollatorForLanguageModeling(theirs, **options)(batch)
        after_theirs = torch.rand(3)
        torch.manual_seed(7)
        ours_out = ferrotune.DataCollatorForLanguageModeling(ours, **options)(batch)
        assert_same(ours_out, theirs_out)
        # The same draws were taken from the default generator.
        assert torch.equal(torch.rand(3), after_theirs)


def test_bare_lists_and_a_seeded_generator(bert):
    ours, theirs = bert
    ids = [r["input_ids"] for r in features(theirs, labels=False)] * 4
    torch.manual_seed(3)
    theirs_out = transformers.DataCollatorForLanguageModeling(theirs)(ids)
    torch.manual_seed(3)
    assert_same(ferrotune.DataCollatorForLanguageModeling(ours)(ids), theirs_out)
    theirs_seeded = transformers.DataCollatorForLanguageModeling(theirs, seed=11)
    ours_seeded = ferrotune.DataCollatorForLanguageModeling(ours, seed=11)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    for _ in range(2):  # the collator's generator goes on from one call to the next
        assert_same(ours_seeded(ids), theirs_seeded(ids))
    # ... and leaves torch's default generator alone.
    assert torch.equal(torch.get_rng_state(), state)


def test_mask_rates_over_many_rows(bert):
    ours, theirs = bert
    rows = features(theirs, labels=False) * 400
    torch.manual_seed(0)
    batch = ferrotune.DataCollatorForLanguageModeling(ours)(rows)
    original = transformers.DataCollatorForLanguageModeling(theirs, mlm=False)(rows)["input_ids"]
    special = torch.isin(original, torch.tensor(theirs.all_special_ids))
    targets = batch["labels"] != -100
    assert not (targets & special).any()  # special tokens and padding are never targets
    assert torch.equal(batch["labels"][targets], original[targets])
    rate = targets.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.01, rate
    at_targets = batch["input_ids"][targets]
    masked = (at_targets == theirs.mask_token_id).float().mean()
    kept = (at_targets == original[targets]).float().mean()
    assert abs(masked - 0.8) < 0.02, masked
    assert abs(kept - (0.1 + 0.1 / len(theirs))) < 0.02, kept
    assert torch.equal(batch["input_ids"][~targets], original[~targets])


def test_bad_settings_are_transformers_errors(bert):
    ours, theirs = bert
    for options in (
        {"mlm_probability": 1.5},
        {"mask_replace_prob": 0.9, "random_replace_prob": 0.2},
        {"random_replace_prob": -0.1},
    ):
        with pytest.raises(ValueError) as expected:
            transformers.DataCollatorForLanguageModeling(theirs, **options)
        with pytest.raises(ValueError) as got:
            ferrotune.DataCollatorForLanguageModeling(ours, **options)
        assert str(got.value).startswith(str(expected.value).rstrip(".")), (
            got.value,
            expected.value,
        )
    with pytest.raises(NotImplementedError, match="whole_word_mask"):
        ferrotune.DataCollatorForLanguageModeling(ours, whole_word_mask=True)
