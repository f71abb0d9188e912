"""Explicit (matmul-softmax) against fused (scaled_dot_product_attention) attention in
ferrotune's encoder, on this machine: forward+backward of a training step (dropout on) and
forward of inference, for all-MiniLM-L6-v2's shape, across sequence lengths and dtypes.

    python bench/attention.py [--batch 16] [--lengths 16,32,64,128,256] [--repeats 5]

Prints milliseconds per call and the fused/explicit ratio; the encoder's automatic choice
("auto") is measured beside them.
"""

import argparse
import statistics
import time

import ferrotune
import torch


def timed(fn, repeats):
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lengths", default="16,32,64,128,256")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = ferrotune.AutoConfig.for_model(
        "bert", hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    )
    model = ferrotune.AutoModelForSequenceClassification.from_config(config)
    modes = ["explicit", "fused", "auto"]
    print(
        f"batch {args.batch}, MiniLM shape (6 layers, 384 hidden, 12 heads), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"{'dtype':9} {'pass':8} {'length':>6} "
        + " ".join(f"{m:>10}" for m in modes)
        + "  fused/explicit"
    )
    for dtype in (torch.float32, torch.bfloat16):
        model.to(dtype)
        for length in map(int, args.lengths.split(",")):
            ids = torch.randint(1000, 2000, (args.batch, length))
            mask = torch.ones_like(ids)
            mask[args.batch // 2 :, length // 2 :] = 0  # half the batch padded to half length
            labels = torch.randint(0, 2, (args.batch,))

            def train_step(ids=ids, mask=mask, labels=labels):
                model.train()
                model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()

            def inference(ids=ids, mask=mask):
                model.eval()
                with torch.no_grad():
                    model(input_ids=ids, attention_mask=mask)

            for name, fn in (("train", train_step), ("infer", inference)):
                times = []
                for mode in modes:
                    model.attention_implementation = mode
                    times.append(timed(fn, args.repeats))
                print(
                    f"{str(dtype)[6:]:9} {name:8} {length:>6} "
                    + " ".join(f"{t:>8.1f}ms" for t in times)
                    + f"  {times[1] / times[0]:>6.2f}"
                )


if __name__ == "__main__":
    main()
