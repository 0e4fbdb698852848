"""``tfds:NAME``: an image-classification dataset from TensorFlow Datasets.

Official train/validation/test splits are used when the dataset has them; missing ones are
carved out of train, stratified by the spec's seed. A subset is read with TFDS split
slicing (``train[:20%]``), so only that part is ever decoded. Pixels still go through
:func:`tlcore.images.load_image`, one image at a time, so they match every other source.
The finished bundle is cached on disk, keyed by the dataset's version and folder.

``tensorflow_datasets`` (and with it TensorFlow) is imported only when a TFDS dataset is
actually loaded: the other sources, and the UI, should not pay seconds of import time.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from tlcore.config import DatasetSpec
from tlcore.data.bundle import DatasetBundle, Progress, SkippedFile, Split, SplitWriter, make_bundle
from tlcore.data.cache import load_cached
from tlcore.data.splits import check_class_counts, stratified_partition
from tlcore.errors import BadImageError, DatasetError
from tlcore.images import load_image
from tlcore.paths import subdir

COMMON_TFDS = (
    "tf_flowers",
    "cats_vs_dogs",
    "beans",
    "rock_paper_scissors",
    "horses_or_humans",
    "oxford_flowers102",
    "caltech101",
)
"""Image-classification datasets known to work; offered as suggestions in the UI."""

OFFICIAL_SPLITS = {"train": ("train",), "val": ("validation", "valid", "val"), "test": ("test",)}
"""Role in the bundle -> TFDS split names that fill it, in order of preference."""


def load_tfds(spec: DatasetSpec, progress: Progress | None = None) -> DatasetBundle:
    """Load ``tfds:NAME``, preparing it first (download) if it is not yet on disk.

    Raises:
        DatasetError: Unknown name, no image or class-label feature, not prepared and not
            downloadable, or classes too small to split.
    """
    builder = _builder(spec.location, spec.data_dir)
    keys = find_image_and_label(builder.info.features, spec.location)
    _prepare(builder, spec.location)
    return load_cached(
        spec, _content(builder), lambda report: _decode(builder, keys, spec, report), progress
    )


def find_image_and_label(features: Any, name: str) -> tuple[str, str]:
    """Keys of the image feature and the class-label feature of a TFDS dataset.

    Keys vary between datasets, so features are found by type; ``image`` and ``label``
    win when several features qualify.

    Args:
        features: The builder's top-level ``FeaturesDict`` (or a plain dict of features).
        name: Dataset name, for the error message.

    Raises:
        DatasetError: There is no top-level Image or no ClassLabel feature.
    """
    import tensorflow_datasets as tfds

    features = dict(features)
    image = _require_feature(features, tfds.features.Image, "image", f"{name!r} has no images")
    label = _require_feature(
        features, tfds.features.ClassLabel, "label", f"{name!r} has no class label"
    )
    return image, label


def plan_splits(available: Collection[str]) -> dict[str, str | None]:
    """Which TFDS split fills each role (train, val, test); None means carve it from train.

    A builder that lists no splits (metadata not generated yet) is read as train only.

    Raises:
        DatasetError: The dataset has splits but none called train.
    """
    names = set(available) or {"train"}
    plan = {
        role: next((name for name in candidates if name in names), None)
        for role, candidates in OFFICIAL_SPLITS.items()
    }
    if plan["train"] is None:
        raise DatasetError(
            f"The dataset has no train split (it has {', '.join(sorted(names))}).",
            "Choose a dataset with a train split.",
        )
    return plan


def split_selector(split: str, subset: float) -> str:
    """TFDS split string reading only the first ``subset`` of ``split`` (``train[:20%]``)."""
    return split if subset >= 1 else f"{split}[:{subset * 100:g}%]"


def _require_feature(
    features: Mapping[str, Any], kind: type, preferred: str, missing: str
) -> str:
    """Key of the top-level feature of type ``kind``, ``preferred`` first, or DatasetError."""
    if isinstance(features.get(preferred), kind):
        return preferred
    key = next((key for key, feature in features.items() if isinstance(feature, kind)), None)
    if key is None:
        raise DatasetError(
            f"TFDS dataset {missing}.",
            f"Pick an image-classification dataset, e.g. {', '.join(COMMON_TFDS[:3])}.",
        )
    return key


def _decode(
    builder: Any, keys: tuple[str, str], spec: DatasetSpec, progress: Progress | None
) -> DatasetBundle:
    """Decode a prepared dataset's planned splits and carve the missing ones."""
    plan = plan_splits(builder.info.splits.keys())
    class_names = list(builder.info.features[keys[1]].names)
    read, skipped = _read_splits(builder, plan, keys, spec, progress)
    check_class_counts(read["train"].labels, class_names)
    splits = _carve_missing(read, spec)
    return make_bundle(
        splits["train"], splits["val"], splits["test"], class_names, skipped, spec.source
    )


def _content(builder: Any) -> dict[str, Any]:
    """What identifies a prepared dataset's data: name, version, folder and split sizes."""
    return {
        "name": builder.name,
        "version": str(builder.version),
        "data_dir": str(builder.data_dir),
        "splits": {name: int(info.num_examples) for name, info in builder.info.splits.items()},
    }


def default_data_dir() -> Path:
    """Where TFDS data is prepared when the spec names no ``data_dir``: under ``TL_HOME``.

    TFDS' own default is ``~/tensorflow_datasets``; keeping it under the studio's home puts
    prepared datasets beside the other caches, where the server's administrator looks.
    """
    return subdir("tensorflow_datasets")


def _builder(name: str, data_dir: str | None) -> Any:
    """The TFDS builder for ``name``; unknown names become a DatasetError with suggestions."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir or str(default_data_dir()))
    except ValueError as exc:  # DatasetNotFoundError, unknown config or version
        close = difflib.get_close_matches(name, COMMON_TFDS, n=3) or COMMON_TFDS
        raise DatasetError(
            f"TFDS has no dataset called {name!r}.",
            f"Try one of: {', '.join(close)}.",
        ) from exc


def _prepare(builder: Any, name: str) -> None:
    """Download and prepare the dataset unless it already is; explain failure offline."""
    if builder.is_prepared():
        return
    try:
        builder.download_and_prepare()
    except Exception as exc:  # noqa: BLE001 - network, disk and parser errors alike
        raise DatasetError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir_root} and could not "
            f"be downloaded ({type(exc).__name__}: {exc}).",
            f"Prepare it where there is internet access (tfds.builder({name!r}, "
            "data_dir=DIR).download_and_prepare()), copy DIR here and set data_dir to it.",
        ) from exc


def _carve_missing(read: dict[str, Split], spec: DatasetSpec) -> dict[str, Split]:
    """Fill the roles without an official split from train, stratified by the seed."""
    missing = [role for role in ("val", "test") if role not in read]
    if not missing:
        return read
    fractions = {"val": spec.val_fraction, "test": spec.test_fraction}
    train = read["train"]
    rest, *parts = stratified_partition(
        train.ids, train.labels, [fractions[role] for role in missing], spec.seed
    )
    carved = {role: train.take(part) for role, part in zip(missing, parts, strict=True)}
    return {**read, **carved, "train": train.take(rest)}


def _read_splits(
    builder: Any, plan: dict[str, str | None], keys: tuple[str, str], spec: DatasetSpec,
    progress: Progress | None,
) -> tuple[dict[str, Split], list[SkippedFile]]:
    """Decode every planned split (sliced to the subset), reporting progress over all."""
    datasets = {
        role: (name, builder.as_dataset(split=split_selector(name, spec.subset),
                                        shuffle_files=False))
        for role, name in plan.items() if name is not None
    }
    total = sum(max(0, int(dataset.cardinality())) for _, dataset in datasets.values())
    done = itertools.count(1)

    def tick() -> None:
        if progress is not None:
            count = next(done)
            progress(count, max(count, total))

    skipped: list[SkippedFile] = []
    splits = {
        role: _read_split(name, dataset, keys, spec.image_size, skipped, tick)
        for role, (name, dataset) in datasets.items()
    }
    return splits, skipped


def _read_split(
    name: str, dataset: Any, keys: tuple[str, str], image_size: int,
    skipped: list[SkippedFile], tick: Callable[[], None],
) -> Split:
    """Decode one split, one example at a time, with ids ``name/index``."""
    import tensorflow_datasets as tfds

    writer = SplitWriter(image_size, int(dataset.cardinality()))
    image_key, label_key = keys
    for index, example in enumerate(tfds.as_numpy(dataset)):
        image_id = f"{name}/{index}"
        try:
            image = load_image(example[image_key], image_size)
        except BadImageError as exc:
            skipped.append(SkippedFile(image_id, str(exc)))
        else:
            writer.add(image, example[label_key], image_id)
        tick()
    return writer.result()
