"""Calibrate the data audit's thresholds on real photos: near-copies against distinct photos.

Every flower photo in ../shared/assets is copied into a temporary folder dataset; for a sample
of them, altered copies are added beside the original: the same bytes (a copy with another
modification time, so another identity), a lossless PNG, JPEG re-encodings at quality 95, 70,
50 and 30, a downscale to half size, crops of 5 % and 10 % off every side, brightness +-15 %.
All go through the studio's own path (pixel store, frozen ImageNet MobileNetV2 alpha 0.35,
pooled features: ``frozen_features``), and the script prints the cosine similarity of each
altered copy to its original, the similarity of every photo to its most similar *other* photo
(what a false alarm would be), recall and false alarms per threshold, and the most similar
distinct pairs (the data set may hold real near-duplicates: look at them). Then it moves 2 % of
the photos' labels to another class and reports how many the audit's label check finds.

``--synthetic 20000 100000`` instead times the audit (leaks, label check, map) on synthetic
1280-wide embeddings stored in a row store on disk, as a run's features are, with its peak RSS.

Run: ``.venv/bin/python bench/audit_threshold.py [--photos 40] [--image-size 224]``; skips (exit
0) when the assets are absent.
"""

from __future__ import annotations

import argparse
import io
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import common
import numpy as np
from PIL import Image, ImageEnhance

Variant = Callable[[Image.Image], tuple[bytes, str]]


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _crop(image: Image.Image, fraction: float) -> Image.Image:
    dx, dy = round(image.width * fraction), round(image.height * fraction)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


VARIANTS: dict[str, Variant] = {
    "png (lossless)": lambda im: (_png(im), ".png"),
    "jpeg q95": lambda im: (_jpeg(im, 95), ".jpg"),
    "jpeg q70": lambda im: (_jpeg(im, 70), ".jpg"),
    "jpeg q50": lambda im: (_jpeg(im, 50), ".jpg"),
    "jpeg q30": lambda im: (_jpeg(im, 30), ".jpg"),
    "half size": lambda im: (_jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), 90),
                             ".jpg"),
    "crop 5 %": lambda im: (_jpeg(_crop(im, 0.05), 90), ".jpg"),
    "crop 10 %": lambda im: (_jpeg(_crop(im, 0.10), 90), ".jpg"),
    "brighter 15 %": lambda im: (_jpeg(ImageEnhance.Brightness(im).enhance(1.15), 90), ".jpg"),
    "darker 15 %": lambda im: (_jpeg(ImageEnhance.Brightness(im).enhance(0.85), 90), ".jpg"),
}
COPY = "same bytes"
THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98)


def build_dataset(flowers: Path, root: Path, per_class: int, seed: int) -> dict[str, tuple[str, str]]:
    """Copy every photo into ``root``, add altered copies of ``per_class`` per class.

    Returns:
        Altered copy's id -> (original's id, variant name).
    """
    rng = np.random.default_rng(seed)
    altered: dict[str, tuple[str, str]] = {}
    for class_dir in sorted(p for p in flowers.iterdir() if p.is_dir()):
        photos = sorted(class_dir.glob("*.jpg"))
        (root / class_dir.name).mkdir(parents=True)
        for photo in photos:
            shutil.copyfile(photo, root / class_dir.name / photo.name)
        for pick in sorted(rng.choice(len(photos), min(per_class, len(photos)), replace=False)):
            photo = photos[int(pick)]
            original = f"{class_dir.name}/{photo.name}"
            image = Image.open(photo).convert("RGB")
            outputs = {name: make(image) for name, make in VARIANTS.items()}
            outputs[COPY] = (photo.read_bytes(), ".jpg")
            for number, (name, (data, suffix)) in enumerate(sorted(outputs.items())):
                target = f"{class_dir.name}/{photo.stem}_v{number:02d}{suffix}"
                (root / target).write_bytes(data)
                altered[target] = (original, name)
    return altered


def features_by_id(root: Path, image_size: int) -> dict[str, np.ndarray]:
    """Unit pooled features of every image of the folder dataset, through ``frozen_features``."""
    from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec
    from tlcore.report.audit import unit_rows
    from tlcore.training.frozen_features import frozen_features, read_all

    spec = RunSpec(DatasetSpec(f"folder:{root}", image_size=image_size),
                   BackboneSpec(common.BACKBONE, alpha=common.ALPHA, weights="imagenet"),
                   TrainSpec(strategy="frozen"))
    features = frozen_features(spec)
    found: dict[str, np.ndarray] = {}
    for split in (features.bundle.train, features.bundle.val, features.bundle.test):
        rows = unit_rows(read_all(features.split_rows(split)))
        found.update(zip(split.ids, rows, strict=True))
    return found


def quantiles(values: np.ndarray) -> list[str]:
    return [f"{q:.4f}" for q in np.quantile(values, [0.0, 0.01, 0.05, 0.5, 1.0])]


def report(found: dict[str, np.ndarray], altered: dict[str, tuple[str, str]]) -> None:
    originals = sorted(i for i in found if i not in altered)
    matrix = np.stack([found[i] for i in originals])
    similar = matrix @ matrix.T
    np.fill_diagonal(similar, -np.inf)
    nearest_other = similar.max(axis=1)
    copies: dict[str, list[float]] = {}
    for image_id, (original, name) in altered.items():
        copies.setdefault(name, []).append(float(found[image_id] @ found[original]))
    rows = [[name, len(values), *quantiles(np.array(values))] for name, values in sorted(copies.items())]
    rows.append(["most similar other photo", len(originals), *quantiles(nearest_other)])
    print(f"cosine similarity to the original ({len(originals)} distinct photos)\n")
    print(common.table(("altered copy", "n", "min", "1 %", "5 %", "median", "max"), rows))
    print("\nper threshold: share of each kind of altered copy found, photos with a distinct photo above\n")
    altered_rows = [[name, *[f"{np.mean(np.array(values) >= t):.0%}" for t in THRESHOLDS]]
                    for name, values in sorted(copies.items()) if name != COPY]
    near = np.array([value for name, values in copies.items() if name != COPY for value in values])
    altered_rows.append(["all altered copies", *[f"{np.mean(near >= t):.1%}" for t in THRESHOLDS]])
    flagged = [str(int(np.sum(nearest_other >= t))) for t in THRESHOLDS]
    altered_rows.append(["distinct photos flagged", *flagged])
    print(common.table(("altered copy", *[f"{t:.2f}" for t in THRESHOLDS]), altered_rows))
    upper = np.triu_indices(len(originals), 1)
    order = np.argsort(-similar[upper])[:12]
    print("\nthe most similar distinct photos (look at them: real duplicates are leaks too)\n")
    print(common.table(("similarity", "photo", "photo"), [
        [f"{similar[upper[0][k], upper[1][k]]:.4f}", originals[upper[0][k]], originals[upper[1][k]]]
        for k in order]))


def label_check(found: dict[str, np.ndarray], altered: dict[str, tuple[str, str]], flips: int = 20,
                seeds: int = 8) -> None:
    """The audit's label check on the distinct photos with ``flips`` labels moved to another class."""
    from tlcore.report.audit import SplitEmbeddings, find_label_issues, label_folds, out_of_fold_probabilities

    ids = sorted(i for i in found if i not in altered)
    rows = np.stack([found[i] for i in ids])
    classes = sorted({i.split("/")[0] for i in ids})
    labels = np.array([classes.index(i.split("/")[0]) for i in ids])
    results: dict[str, list[tuple[int, int]]] = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        flipped = rng.choice(len(ids), flips, replace=False)
        noisy = labels.copy()
        noisy[flipped] = (labels[flipped] + rng.integers(1, len(classes), flips)) % len(classes)
        probabilities = out_of_fold_probabilities(rows, noisy, len(classes), label_folds(noisy, 5))
        split = SplitEmbeddings("train", ids, ids, noisy, rows)
        for method in ("low_self_confidence", "prune_by_noise_rate"):
            flagged = {issue.index for issue in find_label_issues(split, probabilities, method)}
            hits = len(flagged & set(flipped.tolist()))
            results.setdefault(method, []).append((hits, len(flagged) - hits))
    print(f"\nlabel check: {flips} of {len(ids)} labels moved to another class, {seeds} draws\n")
    print(common.table(("cleanlab filter_by", "flipped found (mean, min)", "other images flagged (mean)"), [
        [method, f"{np.mean([h for h, _ in got]) / flips:.0%}, {min(h for h, _ in got) / flips:.0%}",
         f"{np.mean([o for _, o in got]):.1f}"] for method, got in results.items()]))


def calibrate(args: argparse.Namespace, env: common.BenchEnv) -> None:
    import os

    os.environ["TL_DATA_ROOT"] = os.pathsep.join([str(env.root), str(env.assets)])
    root = env.root / "photos"
    started = time.perf_counter()
    altered = build_dataset(env.flowers, root, args.photos, args.seed)
    print(f"== audit thresholds: {len(altered)} altered copies of {len(altered) // (len(VARIANTS) + 1)} "
          f"photos, mobilenet_v2 alpha {common.ALPHA} ImageNet, {args.image_size} px ==")
    print(f"load (1/5/15 m) {common.load_text()}\n")
    found = features_by_id(root, args.image_size)
    report(found, altered)
    label_check(found, altered)
    print(f"\n({time.perf_counter() - started:.0f} s in all)")


# ---- timing on synthetic rows --------------------------------------------------------------


LATENT = 64
"""Synthetic rows are ReLU(latent @ mixing + noise): with 64 latent dimensions 88 % of a unit row's
length lies in 128 directions and a row's nearest other row has median similarity 0.72, as on
the flower photos (87 %, 0.71)."""


def synthetic_rows(rng: np.random.Generator, labels: np.ndarray, model: dict[str, np.ndarray],
                   isotropic: bool) -> np.ndarray:
    width = model["mixing"].shape[1]
    if isotropic:  # the worst case for the screening: no direction matters more than another
        return np.maximum(model["centres"][labels] + rng.normal(scale=1.5, size=(len(labels), width)), 0)
    latent = model["latent"][labels] + rng.normal(size=(len(labels), LATENT))
    return np.maximum(latent @ model["mixing"] + rng.normal(scale=0.3, size=(len(labels), width)), 0)


def synthetic_splits(root: Path, rows: int, width: int, classes: int, seed: int, isotropic: bool):
    """Clustered non-negative rows (pooled features are ReLU outputs) in a row store on disk, as a
    run's features are, split 70/15/15, with 20 test rows copied from training rows, 20 near-copies
    (each feature scaled by 1 + N(0, 0.3): similarity about 0.96) and 1 % of training labels flipped."""
    from tlcore.data.rows import RowLayout, RowStore
    from tlcore.report.audit import SplitEmbeddings

    rng = np.random.default_rng(seed)
    model = {"centres": np.abs(rng.normal(size=(classes, width))),
             "latent": rng.normal(size=(classes, LATENT)),
             "mixing": rng.normal(size=(LATENT, width)) / np.sqrt(LATENT)}
    labels = rng.integers(0, classes, rows)
    train_end, val_end = int(rows * 0.7), int(rows * 0.85)
    sources = dict(zip(range(val_end, val_end + 40), rng.choice(train_end, 40, replace=False).tolist(),
                       strict=True))
    kept: dict[int, np.ndarray] = {}
    store = RowStore(root, RowLayout((width,), "float32"))
    with store.writer() as writer:
        for start in range(0, rows, 8192):
            block = synthetic_rows(rng, labels[start:start + 8192], model, isotropic).astype(np.float32)
            for i, row in enumerate(block, start):
                if i in sources:  # the first 20 exact copies, the next 20 near-copies
                    row = kept[sources[i]]
                    if i >= val_end + 20:
                        row = row * (1 + rng.normal(0, 0.3, width)).astype(np.float32)
                    labels[i] = labels[sources[i]]
                if i in sources.values():
                    kept[i] = row
                writer.add(f"r{i}", row)
    flipped = rng.choice(train_end, train_end // 100, replace=False)
    labels[flipped] = (labels[flipped] + 1) % classes
    array = store.array([f"r{i}" for i in range(rows)])
    bounds = {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, rows)}
    splits = [SplitEmbeddings(name, [f"{name}/{i}" for i in range(lo, hi)], [f"r{i}" for i in range(lo, hi)],
                              labels[lo:hi], array.take(np.arange(lo, hi)))
              for name, (lo, hi) in bounds.items()]
    return splits, labels[val_end:]


def time_audit(args: argparse.Namespace) -> None:
    """The whole audit, then each of its parts, on synthetic rows read from disk a block at a time."""
    import tempfile

    from tlcore.report import audit

    kind = "isotropic (worst case for the screening)" if args.isotropic else "low-rank, like real features"
    print(f"== audit timing on synthetic rows, {kind}; load (1/5/15 m) {common.load_text()} ==\n")
    for rows in args.synthetic:
        with tempfile.TemporaryDirectory(prefix="tlaudit-") as folder, common.RssSampler() as sampler:
            splits, test_labels = synthetic_splits(Path(folder), rows, 1280, 10, args.seed, args.isotropic)
            train = splits[0]
            with sampler.phase(f"audit of {rows:,} rows"):
                found = audit.audit_embeddings(splits, [f"c{k}" for k in range(10)], test_labels)
            with sampler.phase("  leaks"):
                audit.find_leaks(splits)
            with sampler.phase("  labels"):
                probabilities = audit.out_of_fold_probabilities(train.rows, train.labels, 10, 5)
                audit.find_label_issues(train, probabilities)
            with sampler.phase("  map"):
                audit.embedding_map(splits[2], test_labels)
            print(f"{rows:,} rows x 1280 ({', '.join(f'{s.name} {len(s):,}' for s in splits)})")
            print(common.table(common.PHASE_HEADERS, common.phase_rows(sampler.phases)))
            for line in found.warnings():
                print(f"  {line}")
            print(f"  (load {common.load_text()})\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40, help="photos per class to alter (default 40)")
    parser.add_argument("--image-size", type=int, default=224, help="square input side (default 224)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--assets", type=Path, default=common.DEFAULT_ASSETS)
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary folders")
    parser.add_argument("--synthetic", type=int, nargs="+", metavar="ROWS",
                        help="time the audit on this many synthetic rows instead (no assets needed)")
    parser.add_argument("--isotropic", action="store_true",
                        help="with --synthetic: rows with no dominant directions (worst case of the screen)")
    args = parser.parse_args()
    if args.synthetic:
        time_audit(args)
        return
    with common.bench_env(args) as env:
        calibrate(args, env)


if __name__ == "__main__":
    main()
