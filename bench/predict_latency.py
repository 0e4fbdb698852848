"""Warm single-image prediction latency of a saved run, as the Compare page classifies uploads.

A tiny frozen run is trained and saved through ``tlcore.runs.runner.execute_run`` into a temporary
``TL_HOME``, loaded once with ``tlcore.deploy.serving.load_run``, and then ``LoadedRun.predict`` is
timed on one JPEG (as bytes, like an upload) per call, after a few warm-up calls. To show
where the time goes, the same images are then pushed through each step on its own: decoding
(``tlcore.report.evaluate.prepare_images``), ``model.predict`` (what tlcore calls), and two ways
around Keras' per-call ``predict`` overhead: calling the model directly, and a ``tf.function``.

Run: ``.venv/bin/python bench/predict_latency.py`` (``--quick`` for a sanity check).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import common

TARGET_P50_MS = 60.0


def main(argv: Sequence[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=1, quick_epochs=1, subset=0.25)
    common.quick_option(p, "--calls", int, 100, 20, "timed calls")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    common.main(p, run, argv)


def run(args: argparse.Namespace, env: common.BenchEnv) -> None:
    import numpy as np
    import tensorflow as tf

    from tlcore.deploy import serving
    from tlcore.report.evaluate import predict_probabilities, prepare_images, top_predictions
    from tlcore.runs.runner import execute_run
    from tlcore.runs.store import RunStore

    common.print_header("warm single-image prediction latency", args, {
        "model": f"frozen MobileNetV2 alpha {common.ALPHA} + head, trained by tlcore.runs.runner, "
                 "loaded by tlcore.deploy.serving.load_run",
        "calls": f"{args.warmup} warm-up, then {args.calls} timed, one JPEG (bytes) per call",
    })
    jpegs = [p.read_bytes() for p in sorted(env.flowers.glob("*/*.jpg"))[:: 37]][:25]
    with common.RssSampler() as rss:
        with rss.phase("train + save tiny run"):
            store = RunStore()
            record, _ = store.create_run(common.studio_spec(env, args, strategy="frozen"))
            record = execute_run(store, record.id)
        if record.status != "finished":
            raise SystemExit(f"the tiny run ended {record.status}: {record.error}")
        with rss.phase("load_run (first)"):
            loaded = serving.load_run(record.id, store)
        with rss.phase("load_run (again, cached)"):
            serving.load_run(record.id, store)
        for i in range(args.warmup):
            loaded.predict([jpegs[i % len(jpegs)]], top_k=3)
        with rss.phase(f"{args.calls} x LoadedRun.predict"):
            served = _latencies(lambda b: loaded.predict([b], top_k=3), jpegs, args.calls)

        size, model, names = loaded.image_size, loaded.model, loaded.class_names
        batches = [prepare_images([b], size) for b in jpegs]
        compiled = tf.function(lambda x: model(x, training=False))
        steps: dict[str, Callable[[int], object]] = {
            "decode + resize (prepare_images)": lambda i: prepare_images([jpegs[i]], size),
            "model.predict (tlcore: predict_probabilities)":
                lambda i: predict_probabilities(model, batches[i]),
            "model(x) called directly": lambda i: np.asarray(model(batches[i].astype(np.float32),
                                                                   training=False)),
            "tf.function(model)": lambda i: np.asarray(compiled(batches[i].astype(np.float32))),
            "tf.function(model) + top_predictions": lambda i: top_predictions(np.asarray(compiled(
                batches[i].astype(np.float32))), names, 3),
        }
        parts = {}
        for name, step in steps.items():
            for i in range(args.warmup):
                step(i % len(jpegs))
            with rss.phase(name):
                parts[name] = _latencies(step, list(range(len(jpegs))), args.calls)

    rows = [["LoadedRun.predict([jpeg], top_k=3)", *_summary(served)]]
    rows += [[f"  part: {name}", *_summary(ms)] for name, ms in parts.items()]
    print(common.table(("per call", "p50 ms", "p95 ms", "mean ms", "max ms"), rows))
    print()
    print(common.table(common.PHASE_HEADERS, common.phase_rows(rss.phases)))
    p50 = statistics.median(served)
    fixed = statistics.median(parts["decode + resize (prepare_images)"]) + statistics.median(
        parts["tf.function(model)"])
    print(f"\ntarget: p50 <= {TARGET_P50_MS:g} ms: {p50:.1f} ms -> "
          f"{common.verdict(p50 <= TARGET_P50_MS)}")
    print(f"        decode + tf.function instead of model.predict would be about {fixed:.1f} ms")
    print(f"load at end     {common.load_text()}")


def _latencies(call: Callable[[object], object], items: Sequence[object], n: int) -> list[float]:
    """Milliseconds of ``n`` calls, cycling through ``items``."""
    times = []
    for i in range(n):
        item = items[i % len(items)]
        started = time.perf_counter()
        call(item)
        times.append(1000 * (time.perf_counter() - started))
    return times


def _summary(ms: list[float]) -> list[str]:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return [f"{statistics.median(ordered):.1f}", f"{p95:.1f}", f"{statistics.mean(ordered):.1f}",
            f"{ordered[-1]:.1f}"]


if __name__ == "__main__":
    main()
