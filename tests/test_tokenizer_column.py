"""The fast path: a whole text column tokenized in Rust into Arrow columns, equal (values and
Arrow types) to what `datasets.map` stores for transformers' tokenizer; and fork safety."""

import os
import pickle
import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from ferrotune import AutoTokenizer

TEXTS_OF_ROWS = ["¿Qué tal?", "Fine, thanks! 😀", ""]


@pytest.fixture(scope="module")
def dataset(tweets):
    # Not the whole corpus: transformers' side of each comparison runs through datasets.map.
    return datasets.Dataset.from_pandas(
        tweets[["text", "sentiment"]].iloc[:5000], preserve_index=False
    )


def mapped(dataset, tokenizer, **kwargs):
    """What `dataset.map(tokenizer, batched=True)` stores: one Arrow table, metadata aside."""

    def tokenize(batch):
        return tokenizer(batch["text"], **kwargs)

    out = dataset.map(
        tokenize, batched=True, remove_columns=dataset.column_names, load_from_cache_file=False
    )
    return out.data.table.replace_schema_metadata(None).combine_chunks()


def test_the_column_equals_what_datasets_map_stores(ours, theirs, dataset):
    expected = mapped(dataset, theirs, truncation=True)
    table = ours.encode_column(dataset["text"], truncation=True)
    assert isinstance(table, pa.Table)
    assert table.schema == expected.schema
    assert table.equals(expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda ds, df: ds.data.column("text"),  # pyarrow ChunkedArray
        lambda ds, df: pa.chunked_array(
            [
                ds.data.column("text")[:1234].combine_chunks(),
                ds.data.column("text")[1234:].combine_chunks(),
            ]
        ),
        lambda ds, df: ds.data.column("text").combine_chunks(),  # pyarrow Array
        lambda ds, df: pa.array(df.text, type=pa.large_string()),
        lambda ds, df: pa.array(df.text, type=pa.string_view()),
        lambda ds, df: df.text,  # pandas Series
        lambda ds, df: df.text.astype(object),
        lambda ds, df: df.text.tolist(),
        lambda ds, df: df.text.to_numpy(dtype=object),
    ],
    ids=[
        "chunked",
        "two-chunks",
        "array",
        "large_string",
        "string_view",
        "series",
        "object-series",
        "list",
        "numpy",
    ],
)
def test_every_kind_of_column_gives_the_same_table(ours, dataset, make):
    expected = ours.encode_column(dataset["text"], truncation=True)
    df = dataset.to_pandas()
    assert ours.encode_column(make(dataset, df), truncation=True).equals(expected)


def test_a_shuffled_dataset_column_keeps_the_dataset_row_order(ours, theirs, dataset):
    shuffled = dataset.shuffle(seed=42).select(range(1000))
    table = ours.encode_column(shuffled["text"], truncation=True)
    assert table.equals(mapped(shuffled, theirs, truncation=True))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(truncation=True, max_length=12),
        dict(padding="max_length", truncation=True, max_length=32),
        dict(padding=True, pad_to_multiple_of=8),
        dict(padding="longest", padding_side="left", truncation="longest_first", max_length=48),
        dict(add_special_tokens=False, return_attention_mask=False),
        dict(return_token_type_ids=True),
    ],
)
def test_arguments_mean_what_they_mean_in_a_call(ours, theirs, dataset, kwargs):
    texts = dataset["text"][:700]
    pairs = dataset["text"][700:1400]
    expected = pa.table(dict(theirs(texts, pairs, **kwargs)))
    table = ours.encode_column(pa.array(texts), pa.array(pairs), **kwargs)
    assert table.to_pydict() == expected.to_pydict()


def test_the_table_goes_back_into_the_dataset(ours, theirs, dataset):
    table = ours.encode_column(dataset["text"], truncation=True)
    encoded = datasets.concatenate_datasets([dataset, datasets.Dataset(table)], axis=1)
    expected = dataset.map(
        lambda b: theirs(b["text"], truncation=True), batched=True, load_from_cache_file=False
    )
    assert encoded.features == expected.features
    assert encoded[123] == expected[123]
    first_ids = [d.with_format("torch")[0]["input_ids"] for d in (encoded, expected)]
    assert first_ids[0].dtype == first_ids[1].dtype and first_ids[0].equal(first_ids[1])


def test_datasets_can_hash_and_ship_the_tokenizer(ours, theirs, tokenizer_folder, dataset):
    """`datasets` fingerprints a map function with its tokenizer, and pickles both for num_proc."""
    from datasets.fingerprint import Hasher

    again = AutoTokenizer.from_pretrained(tokenizer_folder)
    assert Hasher.hash(ours) == Hasher.hash(again)
    again.padding_side = "left"
    assert Hasher.hash(ours) != Hasher.hash(again)
    restored = pickle.loads(pickle.dumps(again))
    assert restored.padding_side == "left" and restored.name_or_path == again.name_or_path
    assert restored(TEXTS_OF_ROWS) == again(TEXTS_OF_ROWS)
    small = dataset.select(range(400))
    parallel = small.map(
        lambda b: ours(b["text"], truncation=True),
        batched=True,
        num_proc=2,
        remove_columns=small.column_names,
        load_from_cache_file=False,
    )
    assert parallel.data.table.equals(mapped(small, theirs, truncation=True))


def test_an_empty_column(ours):
    table = ours.encode_column(pa.array([], type=pa.string()))
    assert table.num_rows == 0
    type_ids = ["token_type_ids"] if "token_type_ids" in ours.model_input_names else []
    assert table.column_names == ["input_ids", *type_ids, "attention_mask"]


def test_nulls_and_non_strings_name_their_row(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    with pytest.raises(TypeError, match=r"^text at index 4 is null \(None\), expected str$"):
        tokenizer.encode_column(pa.chunked_array([["a", "b", "c"], ["d", None]]))
    with pytest.raises(TypeError, match=r"^text at index 1 is None, expected str$"):
        tokenizer.encode_column(pd.Series(["a", None, "c"], dtype=object))
    with pytest.raises(TypeError, match=r"^text at index 2 has type int, expected str$"):
        tokenizer.encode_column(pd.Series(["a", "b", 3], dtype=object))
    with pytest.raises(TypeError, match=r"^text_pair at index 0 has type float, expected str$"):
        tokenizer.encode_column(["a"], np.array([1.5], dtype=object))
    with pytest.raises(TypeError, match="expected a column of strings, got Arrow type Int64"):
        tokenizer.encode_column(pa.array([1, 2]))
    with pytest.raises(ValueError, match="`text`: 2 does not match batch length of `text_pair`: 1"):
        tokenizer.encode_column(["a", "b"], ["c"])


def word_column_expected(theirs, words, pairs=None, **kwargs):
    """transformers' rows for the word lists, with word ids, special-tokens mask and offsets."""
    b = theirs(
        words,
        pairs,
        is_split_into_words=True,
        return_special_tokens_mask=True,
        return_offsets_mapping=True,
        **kwargs,
    )
    return b, [b.word_ids(i) for i in range(len(words))]


@pytest.mark.parametrize(
    "kwargs",
    [{}, dict(truncation=True, max_length=7), dict(padding=True, pad_to_multiple_of=8)],
)
def test_a_column_of_word_lists_gives_word_ids_masks_and_offsets(ours, theirs, tweets, kwargs):
    words = [text.split() for text in tweets.text.tolist()[:400]] + [[], ["¿", "Qué", "tal?"]]
    expected, word_ids = word_column_expected(theirs, words, **kwargs)
    for column in (pa.array(words), pa.array(words, type=pa.large_list(pa.large_string())), words):
        table = ours.encode_column(
            column,
            is_split_into_words=True,
            return_word_ids=True,
            return_special_tokens_mask=True,
            return_offsets_mapping=True,
            **kwargs,
        )
        assert table.column_names == [
            *(k for k in ("input_ids", "token_type_ids", "attention_mask") if k in expected),
            "word_ids",
            "special_tokens_mask",
            "offset_mapping",
        ]
        for name in ("input_ids", "attention_mask", "special_tokens_mask", "offset_mapping"):
            want = expected[name]
            if name == "offset_mapping":
                want = [[list(pair) for pair in row] for row in want]
            assert table.column(name).to_pylist() == want, name
        assert table.column("word_ids").to_pylist() == word_ids
        assert table.schema.field("word_ids").type == pa.list_(pa.int32())
        assert table.schema.field("special_tokens_mask").type == pa.list_(pa.int8())
    # Pairs of word lists, and details of plain texts.
    expected, word_ids = word_column_expected(theirs, words[:50], words[50:100], truncation=True)
    table = ours.encode_column(
        pa.array(words[:50]),
        words[50:100],
        is_split_into_words=True,
        truncation=True,
        return_word_ids=True,
    )
    assert table.column("input_ids").to_pylist() == expected["input_ids"]
    assert table.column("word_ids").to_pylist() == word_ids
    texts = tweets.text.tolist()[:100]
    b = theirs(texts, return_special_tokens_mask=True)
    table = ours.encode_column(
        pa.array(texts), return_word_ids=True, return_special_tokens_mask=True
    )
    assert table.column("special_tokens_mask").to_pylist() == b["special_tokens_mask"]
    assert table.column("word_ids").to_pylist() == [b.word_ids(i) for i in range(len(texts))]


def test_a_datasets_column_of_word_lists(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    data = datasets.Dataset.from_dict({"tokens": [["EU", "rejects", "German", "call"], ["Peter"]]})
    table = tokenizer.encode_column(data["tokens"], is_split_into_words=True, return_word_ids=True)
    first = tokenizer(data[0]["tokens"], is_split_into_words=True)
    assert table.column("word_ids")[0].as_py() == first.word_ids()
    assert (
        table.column("input_ids")[1].as_py()
        == tokenizer(["Peter"], is_split_into_words=True)["input_ids"]
    )


def test_bad_word_columns_name_the_row(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    words = dict(is_split_into_words=True)
    with pytest.raises(TypeError, match="text at index 1 is null"):
        tokenizer.encode_column(pa.array([["a"], None]), **words)
    with pytest.raises(TypeError, match="text at index 2: word at index 1 is null"):
        tokenizer.encode_column(pa.array([["a"], ["b"], ["c", None]]), **words)
    with pytest.raises(TypeError, match="text at index 0 is a str; with is_split_into_words"):
        tokenizer.encode_column(pa.array(["a b"]), **words)
    with pytest.raises(TypeError, match="list<string>.*got Arrow type Int64"):
        tokenizer.encode_column(pa.array([1, 2]), **words)
    with pytest.raises(TypeError, match="expected a column of strings, got Arrow type Int64"):
        tokenizer.encode_column(pa.array([[1], [2]]), **words)
    with pytest.raises(TypeError, match="text at index 1: word at index 0 has type int"):
        tokenizer.encode_column([["a"], [3]], **words)


FORK_CHECK = """
import os, sys
import ferrotune
from ferrotune import _core

tokenizer = ferrotune.AutoTokenizer.from_pretrained(sys.argv[1])
texts = ["hola mundo, ¿qué tal? número %d" % i for i in range(5000)]
parent = tokenizer(texts, truncation=True)["input_ids"]
assert _core.parallelism_enabled()
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    # The child inherits no rayon threads: the handler of src/parallel.rs turned parallelism off.
    ok = not _core.parallelism_enabled()
    ok = ok and tokenizer(texts, truncation=True)["input_ids"] == parent
    ok = ok and tokenizer.encode_column(texts).column("input_ids").to_pylist() == parent
    os.write(write, b"ok" if ok else b"different")
    os._exit(0)
_, status = os.waitpid(pid, 0)
os.close(write)
print(os.read(read, 100).decode(), os.waitstatus_to_exitcode(status), _core.parallelism_enabled())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_after_parallel_work_tokenizes_serially_and_the_same(minilm_dir):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_CHECK), str(minilm_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.stdout.split() == ["ok", "0", "True"], out.stderr
