"""Data-path timings for the embedded MNIST subset, measured side by side in one run.

    .venv/bin/python benchmarks/bench_data.py [--repeats 5]

Prints the median of each: cold load of the .npz, uint8 -> float conversion of all 5,000 digits, and one epoch of
batches of 128 drawn (a) through torch's DataLoader over sample dicts and (b) by slicing a batch held in memory,
with the ratio of (a) to (b); each at 1 thread and at torch's default thread count, since on a busy 2-core machine
torch's intra-op threads can slow small tensor operations down by orders of magnitude.
"""

import argparse
import statistics
import time

import torch

from sgm_nb.data import load_mnist5k, make_batch, mnist5k_dataset


def timed(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def epoch_dataloader(ds, bs):
    for b in torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True):
        b["jpg"].sum()


def epoch_in_memory(batch, bs):
    perm = torch.randperm(len(batch["jpg"]))
    for i in range(0, len(perm), bs):
        idx = perm[i : i + bs]
        {k: v[idx] for k, v in batch.items()}["jpg"].sum()


def main(repeats: int = 5, bs: int = 128):
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        run(repeats, bs)


def run(repeats, bs):
    def cold():
        load_mnist5k.cache_clear()
        load_mnist5k()

    images, labels = load_mnist5k()
    ds, batch = mnist5k_dataset("all"), make_batch(images, labels)
    rows = [
        ("cold load of mnist_5k.npz", timed(cold, repeats)),
        ("uint8 -> float of 5,000 digits", timed(lambda: make_batch(images, labels), repeats)),
        (f"epoch, DataLoader, batch {bs}", timed(lambda: epoch_dataloader(ds, bs), repeats)),
        (f"epoch, in-memory slicing, batch {bs}", timed(lambda: epoch_in_memory(batch, bs), repeats)),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {repeats}")
    for name, t in rows:
        print(f"{name:<40} {1e3 * t:9.2f} ms")
    print(f"{'DataLoader / in-memory':<40} {rows[2][1] / rows[3][1]:9.1f} x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    main(ap.parse_args().repeats)
