"""Real-sized datasets: memory that stays flat and reruns that cost only what changed.

For each N (photos generated from the real flower photos: random crops, flips and colour
shifts, 256 px JPEG) it prints, each step in a fresh process so its peak resident memory is
its own (``ru_maxrss``, what ``/usr/bin/time -v`` reports):

- the preview (listing and counts, a few samples decoded): seconds and peak RSS;
- a cold frozen run of MobileNetV2 alpha 0.35 at 224 px for 2 epochs (every image decoded
  once into the pixel store, forwarded once into the feature store): wall time, images/s,
  peak RSS, and the folded backbone's forward-only images/s measured in the same process;
- the warm rerun (same data, everything cached) and the +1 % rerun (1 % new photos added).

At one N (``--recipe-at``) it also runs the plain Keras recipe (a ``tf.data`` pipeline over the
files, ``model.fit``) for one epoch, for its peak RSS and epoch time. Targets (issue 16): train
peak RSS at most 2 GB at 100k and within 25 % of the 1k run; preview of 100k at most 3 s and
300 MB more than of 1k; cold images/s at least 0.8 of forward-only; +1 % rerun at most 10 % of
the cold run.

    .venv/bin/python bench/scale.py --sizes 1000,5000,20000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from common import ALPHA, BACKBONE, DEFAULT_ASSETS, FLOWERS, WEIGHT_FILE_224, WEIGHTS, table, verdict

PHOTO_SIZE = 256
IMAGE_SIZE = 224
EPOCHS = 2
FORWARD_ONLY_SECONDS = 5.0


# ---- generating photos ---------------------------------------------------------------------


def _variant(job: tuple[str, str, int]) -> None:
    """One new photo: a random crop (60-100 % of the side), maybe mirrored, colour-shifted."""
    from PIL import Image, ImageEnhance, ImageOps

    source, target, seed = job
    rng = random.Random(seed)
    with Image.open(source) as image:
        image = image.convert("RGB")
        side = min(image.size)
        crop = int(side * rng.uniform(0.6, 1.0))
        left, top = rng.randint(0, image.width - crop), rng.randint(0, image.height - crop)
        image = image.crop((left, top, left + crop, top + crop)).resize((PHOTO_SIZE, PHOTO_SIZE))
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))
        image.save(target, "JPEG", quality=90)


def generate(flowers: Path, out: Path, count: int, first_seed: int = 0, prefix: str = "p") -> None:
    """``count`` photos spread evenly over the flower classes, written under ``out/<class>/``."""
    classes = sorted(p for p in flowers.iterdir() if p.is_dir())
    sources = {c.name: sorted(c.glob("*.jpg")) for c in classes}
    jobs = []
    for i in range(count):
        name = classes[i % len(classes)].name
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        source = sources[name][(i // len(classes)) % len(sources[name])]
        jobs.append((str(source), str(folder / f"{prefix}{first_seed + i:06d}.jpg"), first_seed + i))
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_variant, jobs, chunksize=256))


def subset_by_links(full: Path, out: Path, count: int) -> None:
    """The first ``count`` photos of ``full`` (evenly per class) as hard links: no extra disk."""
    classes = sorted(p for p in full.iterdir() if p.is_dir())
    per_class = count // len(classes)
    for folder in classes:
        (out / folder.name).mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.iterdir())[:per_class]:
            os.link(path, out / folder.name / path.name)


# ---- one measured step, in a child process -------------------------------------------------


def child(step: str, data: Path) -> dict[str, object]:
    """Run one step here and return its figures (called in a fresh process)."""
    if step == "preview":
        from tlcore.config import DatasetSpec
        from tlcore.data.preview import preview_dataset

        imported = time.perf_counter()
        preview = preview_dataset(DatasetSpec(f"folder:{data}", image_size=IMAGE_SIZE))
        return {"seconds": time.perf_counter() - imported, "images": preview.total_images}
    if step == "recipe":
        return _recipe(data)
    if step == "cold":
        return _train(data, forward_only=True)
    if step.startswith("tfds"):
        return _train_tfds(int(step[len("tfds") :]))
    return _train(data)


def _spec(data: Path):  # -> RunSpec
    from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec

    return RunSpec(
        DatasetSpec(f"folder:{data}", image_size=IMAGE_SIZE, seed=7),
        BackboneSpec(BACKBONE, alpha=ALPHA, weights="imagenet"),
        TrainSpec(strategy="frozen", epochs=EPOCHS, batch_size=32, seed=7),
    )


def _train(data: Path, forward_only: bool = False) -> dict[str, object]:
    """A frozen run as the worker trains it, timed from after the imports.

    With ``forward_only``, the frozen part's forward-only speed is measured just before the
    run (on a classifier built for it and dropped) and just after (on the run's own model):
    on a shared VM it drifts by a quarter within minutes, and the mean of both brackets the
    run in time.
    """
    import gc
    import re

    from tlcore.backbones import build_backbone
    from tlcore.training.loop import train
    from tlcore.training.model import build_classifier

    spec = _spec(data)
    classes = sum(1 for p in data.iterdir() if p.is_dir())
    before = (
        _forward_only_rates(
            build_classifier(build_backbone(spec.backbone, IMAGE_SIZE), classes, IMAGE_SIZE, spec.train)
        )
        if forward_only
        else None
    )
    gc.collect()
    started = time.perf_counter()
    result = train(spec)
    accuracy = result.test_report().accuracy
    seconds = time.perf_counter() - started
    images = sum(len(split) for split in result.bundle.splits().values())
    forwarded = 0
    for note in result.notes:
        match = re.search(r"([0-9,]+) image\(s\) (?:forwarded|computed as they were decoded)", note)
        if match:
            forwarded += int(match.group(1).replace(",", ""))
    figures: dict[str, object] = {
        "seconds": seconds,
        "images": images,
        "forwarded": forwarded,
        "accuracy": accuracy,
    }
    if before is not None:
        after = _forward_only_rates(result.model)
        figures.update(
            forward_only_before=before[0],
            forward_only_after=after[0],
            forward_only=(before[0] + after[0]) / 2,
            forward_only_two_calls=(before[1] + after[1]) / 2,
        )
    return figures


def _train_tfds(examples: int) -> dict[str, object]:
    """A frozen run on ``tfds:cats_vs_dogs`` as TFDS's mock data (random images, offline)."""
    import tensorflow_datasets as tfds

    from tlcore.config import DatasetSpec
    from tlcore.training.loop import train

    spec = _spec(Path("/unused"))
    spec = type(spec)(
        DatasetSpec("tfds:cats_vs_dogs", image_size=IMAGE_SIZE, seed=7), spec.backbone, spec.train
    )
    started = time.perf_counter()
    with tfds.testing.mock_data(num_examples=examples):
        result = train(spec)
    images = sum(len(split) for split in result.bundle.splits().values())
    return {"seconds": time.perf_counter() - started, "images": images}


def _forward_only_rates(model) -> tuple[float, float]:  # model: keras.Model
    """Images/s of the BatchNorm-folded frozen part alone, on pixels already in memory: one
    call at a time (the issue's reference), and two calls at once from two threads (as the
    feature pass now runs it, :mod:`tlcore.training.forward_streams`)."""
    import threading

    import numpy as np

    from tlcore.training.cached_stage import FEATURE_BATCH, plan_cut
    from tlcore.training.folding import FrozenForward
    from tlcore.training.model import FreezePolicy

    forward = FrozenForward(plan_cut(model, FreezePolicy(trainable_top=0)).lower)
    batch = (
        np.random.default_rng(0).uniform(0, 255, (FEATURE_BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    )
    forward(batch)

    def rate(callers: int) -> float:
        counts, started = [0] * callers, time.perf_counter()

        def call(slot: int) -> None:
            while time.perf_counter() - started < FORWARD_ONLY_SECONDS:
                np.asarray(forward(batch))
                counts[slot] += FEATURE_BATCH

        threads = [threading.Thread(target=call, args=(slot,)) for slot in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts) / (time.perf_counter() - started)

    return rate(1), rate(2)


def _recipe(data: Path) -> dict[str, object]:
    """The plain Keras recipe, one epoch, on the studio's own split of the same folder."""
    import keras_recipe
    from common import FileSplit

    from tlcore.data.assemble import assign_splits
    from tlcore.data.registry import list_dataset

    spec = _spec(data)
    catalogue = list_dataset(spec.dataset)
    import numpy as np

    parts = assign_splits(catalogue, np.arange(len(catalogue)), spec.dataset)
    split = FileSplit(
        class_names=list(catalogue.class_names),
        paths={
            n: [str(data / catalogue.ids[i]) for i in p]
            for n, p in zip(("train", "val", "test"), parts, strict=True)
        },
        labels={
            n: [int(catalogue.labels[i]) for i in p]
            for n, p in zip(("train", "val", "test"), parts, strict=True)
        },
    )
    weights = Path(os.environ["KERAS_HOME"]) / "models" / WEIGHT_FILE_224
    result = keras_recipe.run(split, weights, IMAGE_SIZE, 32, 1, 7, 1e-3)
    return {
        "seconds": result.fit_seconds,
        "epoch_seconds": result.epoch_seconds[0],
        "accuracy": result.accuracy,
    }


def measure(step: str, data: Path, home: Path) -> dict[str, object]:
    """Run ``step`` in a fresh process with ``home`` as TL_HOME; add its peak RSS in MB."""
    env = {**os.environ, "TL_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = (
        f"import sys, json, resource; sys.path[:0] = [{str(Path(__file__).parent)!r}, "
        f"{str(Path(__file__).parents[1])!r}]\n"
        f"import scale; out = scale.child({step!r}, __import__('pathlib').Path({str(data)!r}))\n"
        "out['peak_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print('RESULT ' + json.dumps(out))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"{step} on {data} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


# ---- the whole benchmark -------------------------------------------------------------------


def run_size(root: Path, full: Path, n: int, recipe: bool) -> dict[str, dict[str, object]]:
    data = root / f"data-{n}"
    subset_by_links(full, data, n)
    home = root / f"home-{n}"
    figures = {"preview": measure("preview", data, home), "cold": measure("cold", data, home)}
    figures["warm"] = measure("train", data, home)
    generate(
        Path(os.environ["TL_BENCH_FLOWERS"]), data, max(5, n // 100), first_seed=10_000_000, prefix="new"
    )
    figures["plus1"] = measure("train", data, home)
    if recipe:
        figures["recipe"] = measure("recipe", data, home)
    shutil.rmtree(home, ignore_errors=True)  # the pixel store of 100k photos at 224 px is 15 GB
    return figures


def report(results: dict[int, dict[str, dict[str, object]]]) -> None:
    rows = []
    for n, f in results.items():
        cold, warm, plus = f["cold"], f["warm"], f["plus1"]
        rows.append(
            [
                f"{n:,}",
                f"{f['preview']['seconds']:.2f}",
                f"{f['preview']['peak_mb']:.0f}",
                f"{cold['seconds']:.0f}",
                f"{cold['images'] / cold['seconds']:.0f}",
                f"{cold['forward_only']:.0f} "
                f"({cold['forward_only_before']:.0f}/{cold['forward_only_after']:.0f})",
                f"{cold['images'] / cold['seconds'] / cold['forward_only']:.2f}",
                f"{cold['forward_only_two_calls']:.0f}",
                f"{cold['images'] / cold['seconds'] / cold['forward_only_two_calls']:.2f}",
                f"{cold['peak_mb']:.0f}",
                f"{warm['seconds']:.0f}",
                f"{plus['seconds']:.0f} ({plus['forwarded']:,} fwd)",
                f"{plus['seconds'] / cold['seconds']:.2f}",
                f"{cold['accuracy']:.3f}",
            ]
        )
    print(
        table(
            [
                "photos",
                "preview s",
                "preview peak MB",
                "cold s",
                "cold img/s",
                "fwd-only img/s (before/after)",
                "cold/fwd",
                "fwd-only, 2 calls at once",
                "cold/fwd 2 calls",
                "train peak MB",
                "warm s",
                "+1 % s",
                "+1 %/cold",
                "test acc",
            ],
            rows,
        )
    )
    sizes = sorted(results)
    small, large = results[sizes[0]], results[sizes[-1]]
    peak_ratio = large["cold"]["peak_mb"] / small["cold"]["peak_mb"]
    print(
        f"\ntrain peak at {sizes[-1]:,}: {large['cold']['peak_mb']:.0f} MB (target <= 2048: "
        f"{verdict(large['cold']['peak_mb'] <= 2048)}); {peak_ratio:.2f} x the {sizes[0]:,} run "
        f"(target <= 1.25: {verdict(peak_ratio <= 1.25)})"
    )
    cold = large["cold"]
    speed = cold["images"] / cold["seconds"] / cold["forward_only"]
    rerun = large["plus1"]["seconds"] / cold["seconds"]
    print(
        f"cold run at {sizes[-1]:,}: {speed:.2f} of forward-only (target >= 0.8: {verdict(speed >= 0.8)}); "
        f"+1 % rerun {rerun:.2f} of the cold run (target <= 0.10: {verdict(rerun <= 0.10)})"
    )
    preview_growth = large["preview"]["peak_mb"] - small["preview"]["peak_mb"]
    print(
        f"preview at {sizes[-1]:,}: {large['preview']['seconds']:.2f} s (target <= 3: "
        f"{verdict(large['preview']['seconds'] <= 3)}), {preview_growth:+.0f} MB against {sizes[0]:,} "
        f"(target <= 300: {verdict(preview_growth <= 300)})"
    )
    for n, f in results.items():
        if "recipe" in f:
            r = f["recipe"]
            print(
                f"plain Keras recipe at {n:,}: peak {r['peak_mb']:.0f} MB, "
                f"one epoch {r['epoch_seconds']:.0f} s "
                f"(studio cold 2-epoch run: {f['cold']['seconds']:.0f} s, peak {f['cold']['peak_mb']:.0f} MB)"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,5000,20000,100000", help="comma-separated photo counts")
    p.add_argument("--recipe-at", type=int, default=20000, help="also run the plain Keras recipe at this N")
    p.add_argument(
        "--tfds-mock",
        type=int,
        default=0,
        help="also train on tfds:cats_vs_dogs mock data of this many examples (23262 is the real size)",
    )
    p.add_argument("--assets", type=Path, default=DEFAULT_ASSETS)
    p.add_argument("--root", type=Path, default=None, help="work folder (default: a temporary one)")
    args = p.parse_args()
    sizes = sorted(int(n) for n in args.sizes.split(",") if n)
    flowers, weights = args.assets / FLOWERS, args.assets / WEIGHTS
    if not (weights / WEIGHT_FILE_224).is_file() or not flowers.is_dir():
        print(f"SKIPPED: the offline assets are not at {args.assets}.")
        return
    root = args.root or Path(tempfile.mkdtemp(prefix="tlscale-"))
    keras_home = root / "keras"
    (keras_home / "models").mkdir(parents=True, exist_ok=True)
    for item in weights.iterdir():
        shutil.copy2(item, keras_home / "models" / item.name)
    os.environ.update(
        KERAS_HOME=str(keras_home),
        TL_DATA_ROOT=str(root),
        TL_BENCH_FLOWERS=str(flowers),
        TL_PIXEL_CACHE_MB=str(40 * 1024),
    )
    full = root / "photos"
    if sizes and not full.is_dir():
        started = time.perf_counter()
        generate(flowers, full, sizes[-1])
        print(f"generated {sizes[-1]:,} photos in {time.perf_counter() - started:.0f} s")
    print(
        f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, peak RSS of the parent "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    if args.tfds_mock:
        figures = measure(f"tfds{args.tfds_mock}", root, root / "home-tfds")
        print(
            f"tfds:cats_vs_dogs (mock, {figures['images']:,} images): frozen 2 epochs in "
            f"{figures['seconds']:.0f} s, peak RSS {figures['peak_mb']:.0f} MB"
        )
        shutil.rmtree(root / "home-tfds", ignore_errors=True)
    results = {}
    for n in sizes:
        results[n] = run_size(root, full, n, recipe=n == args.recipe_at)
        print(f"N={n:,}: {json.dumps(results[n])}", flush=True)
    if results:
        report(results)


if __name__ == "__main__":
    main()
