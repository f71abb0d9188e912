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
