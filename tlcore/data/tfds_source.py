"""``tfds:NAME``: an image-classification dataset from TensorFlow Datasets.

Official train/validation/test splits are used when the dataset has them; missing ones are
carved out of train by each image's seeded hash, like every other source. Images stream from
TFDS's own files: the catalogue reads labels only (the image bytes are skipped, not decoded,
and the label list is kept under ``TL_HOME`` per dataset version), and the decode pass reads
the encoded images in order and decodes, through :func:`tlcore.images.load_image`, only those
the pixel store has not seen. An image's identity is its dataset, version, split and index.

``tensorflow_datasets`` (and with it TensorFlow) is imported only when a TFDS dataset is
actually loaded: the other sources, and the UI, should not pay seconds of import time.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from tlcore.config import DatasetSpec
from tlcore.data.assemble import bundle_from_catalogue
from tlcore.data.bundle import DatasetBundle, Progress
from tlcore.data.catalogue import FREE, Catalogue, Decoded, Decoder, windowed_map
from tlcore.errors import BadImageError, DatasetError
from tlcore.files import atomic_write
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
    """Load ``tfds:NAME``, preparing it first (download) if it is not yet on disk."""
    return bundle_from_catalogue(list_tfds(spec), spec, progress)


def list_tfds(spec: DatasetSpec) -> Catalogue:
    """The catalogue of ``tfds:NAME``: labels and identities, no image decoded.

    Raises:
        DatasetError: Unknown name, no image or class-label feature, not prepared and not
            downloadable.
    """
    builder = _builder(spec.location, spec.data_dir)
    keys = find_image_and_label(builder.info.features, spec.location)
    _prepare(builder, spec.location)
    plan = {role: name for role, name in plan_splits(builder.info.splits.keys()).items() if name}
    labels = {name: _labels(builder, name, keys) for name in plan.values()}
    order = [(role, name, index) for role, name in plan.items() for index in range(len(labels[name]))]
    version = f"tfds:{builder.name}:{builder.version}"
    role_code = {"train": FREE, "val": 1, "test": 2}
    return Catalogue(
        ids=[f"{name}/{index}" for _, name, index in order],
        labels=np.concatenate([labels[name] for name in plan.values()]).astype(np.int32),
        class_names=list(builder.info.features[keys[1]].names),
        identities=[f"{version}:{name}:{index}" for _, name, index in order],
        decode=_decoder(builder, keys[0], [(name, index) for _, name, index in order]),
        fixed_split=np.array([role_code[role] for role, _, _ in order], dtype=np.int8),
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


def _raw(builder: Any, split: str, image_key: str) -> Any:
    """The split's examples in order, with images left encoded (bytes)."""
    import tensorflow_datasets as tfds

    return builder.as_dataset(split=split, shuffle_files=False,
                              decoders={image_key: tfds.decode.SkipDecoding()})


def _labels(builder: Any, split: str, keys: tuple[str, str]) -> np.ndarray:
    """Every label of a split, read once per dataset version and kept under ``TL_HOME``."""
    import tensorflow_datasets as tfds

    examples = builder.info.splits[split].num_examples if split in builder.info.splits else None
    stamp = f"{builder.name}|{builder.version}|{builder.data_dir}|{split}|{examples}"
    cached = subdir("tfds-labels") / f"{hashlib.sha256(stamp.encode()).hexdigest()[:24]}.npy"
    if examples is not None:  # a builder without split metadata (mocked) is read every time
        with suppress(OSError, ValueError):
            return np.load(cached)
    dataset = _raw(builder, split, keys[0]).map(lambda example: example[keys[1]]).batch(4096)
    labels = np.concatenate([np.zeros(0, np.int64), *tfds.as_numpy(dataset)]).astype(np.int32)
    def write(path: Path) -> None:
        with path.open("wb") as handle:
            np.save(handle, labels)

    if examples is not None:
        with suppress(OSError):
            atomic_write(cached, write)
    return labels


def _decoder(builder: Any, image_key: str, entries: list[tuple[str, int]]) -> Decoder:
    """Decode catalogue entries by reading their splits in order, skipping unwanted images."""
    import tensorflow_datasets as tfds

    def decode(indices: Sequence[int], size: int) -> Iterator[Decoded]:
        wanted: dict[str, dict[int, int]] = {}
        for index in indices:
            name, position = entries[index]
            wanted.setdefault(name, {})[position] = index
        for name, positions in wanted.items():
            examples = tfds.as_numpy(_raw(builder, name, image_key))
            chosen = ((positions[i], example[image_key])
                      for i, example in enumerate(examples) if i in positions)
            wanted_only = itertools.islice(chosen, len(positions))
            yield from windowed_map(lambda item: _decode_one(*item, size), wanted_only)

    return decode


def _decode_one(index: int, data: bytes, size: int) -> Decoded:
    try:
        return index, load_image(bytes(data), size)
    except BadImageError as exc:
        return index, exc
