"""Which on-disk format for decoded pixels: the row store, a memory map, or TFRecord shards.

Writes the same N decoded 224 px images (random pixels: decoding is not what is measured) in
three ways, then reads them back as a training epoch does: shuffled batches of 32. For each it
prints the write time, the epoch's read time (images/s) and how much the process's resident
memory grew while reading, each in a fresh process so one format's pages do not count against
another's. The row store (``tlcore.data.rows``) reads rows by identity with ``pread``; a memory
map reads by position and its touched pages count as resident; TFRecord shards can only be read
in order (shuffling needs a buffer in memory, and per-image reuse across datasets needs an index
the format does not have).

    .venv/bin/python bench/pixel_formats.py --images 4000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

SIZE = 224
BATCH = 32
SHUFFLE_BUFFER = 1000


def _images(count: int):  # yields (identity, pixels)
    rng = np.random.default_rng(0)
    for i in range(count):
        yield f"img{i}", rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def write(kind: str, root: Path, count: int) -> float:
    started = time.perf_counter()
    if kind == "rowstore":
        from tlcore.data.rows import RowLayout, RowStore

        with RowStore(root, RowLayout((SIZE, SIZE, 3), "uint8")).writer() as writer:
            for identity, pixels in _images(count):
                writer.add(identity, pixels)
    elif kind == "memmap":
        array = np.lib.format.open_memmap(root / "pixels.npy", "w+", np.uint8, (count, SIZE, SIZE, 3))
        for i, (_, pixels) in enumerate(_images(count)):
            array[i] = pixels
        array.flush()
    else:
        import tensorflow as tf

        with tf.io.TFRecordWriter(str(root / "pixels.tfrecord")) as writer:
            for _, pixels in _images(count):
                writer.write(pixels.tobytes())
    return time.perf_counter() - started


def read(kind: str, root: Path, count: int) -> dict[str, float]:
    """One shuffled epoch in batches; returns seconds and RSS growth in MB."""
    process = psutil.Process()
    order = np.random.default_rng(1).permutation(count)
    rss_start, peak = process.memory_info().rss, 0
    started = time.perf_counter()
    if kind == "rowstore":
        from tlcore.data.rows import RowLayout, RowStore

        rows = RowStore(root, RowLayout((SIZE, SIZE, 3), "uint8")).array([f"img{i}" for i in range(count)])
        for start in range(0, count, BATCH):
            rows[order[start : start + BATCH]].astype(np.float32)
            peak = max(peak, process.memory_info().rss)
    elif kind == "memmap":
        array = np.load(root / "pixels.npy", mmap_mode="r")
        for start in range(0, count, BATCH):
            array[np.sort(order[start : start + BATCH])].astype(np.float32)
            peak = max(peak, process.memory_info().rss)
    else:
        import tensorflow as tf

        dataset = tf.data.TFRecordDataset(str(root / "pixels.tfrecord")).shuffle(SHUFFLE_BUFFER, seed=1)
        dataset = dataset.map(lambda raw: tf.reshape(tf.io.decode_raw(raw, tf.uint8), (SIZE, SIZE, 3)))
        for batch in dataset.batch(BATCH):
            tf.cast(batch, tf.float32).numpy()
            peak = max(peak, process.memory_info().rss)
    return {"seconds": time.perf_counter() - started, "rss_growth_mb": (peak - rss_start) / 2**20}


def child(kind: str, root: str, count: int) -> None:
    folder = Path(root) / kind
    folder.mkdir(parents=True, exist_ok=True)
    written = write(kind, folder, count)
    result = read(kind, folder, count)
    result.update(write_seconds=written, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4000)
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="tlformats-")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    print(
        f"{args.images:,} images of {SIZE} px ({args.images * SIZE * SIZE * 3 / 2**30:.2f} GiB), "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print("| format | write s | shuffled epoch s | images/s | RSS growth while reading MB |")
    print("| --- | --- | --- | --- | --- |")
    for kind in ("rowstore", "memmap", "tfrecord"):
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import pixel_formats as m; "
            f"m.child({kind!r}, {root!r}, {args.images})"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
        print(
            f"| {kind} | {result['write_seconds']:.1f} | {result['seconds']:.1f} | "
            f"{args.images / result['seconds']:,.0f} | {result['rss_growth_mb']:+.0f} |"
        )
    subprocess.run(["rm", "-rf", root], check=False)


if __name__ == "__main__":
    main()
