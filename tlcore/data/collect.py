"""Datasets collected in the browser: named classes of uploaded or camera images, as a folder.

A collected dataset is an ordinary class-per-folder tree, ``$TL_HOME/collected/<dataset>/<class>/``,
so every page and the CLI read it as ``folder:PATH`` (:func:`tlcore.paths.data_roots` always
allows that root). Images are stored as they are added, each one atomically, so a reload or
a second session never loses or half-sees one. Nothing reaches the disk before it has been
fully decoded by :func:`tlcore.images.load_image`: what is stored is the decoded pixels,
upright and re-encoded, so metadata (a phone photo's GPS position) and anything hidden
behind the image data are left out. Names become folder names and labels, so they are
checked as strictly as class folders on disk are (:func:`tlcore.data.folder.check_class_folder`).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tlcore.config import DatasetSpec, setting
from tlcore.data.folder import IGNORED_FOLDERS, check_class_folder, visible_subfolders
from tlcore.data.labels import is_invisible, visible_label
from tlcore.data.splits import MIN_IMAGES_PER_CLASS
from tlcore.errors import DatasetError, StorageError, TLError
from tlcore.files import atomic_write
from tlcore.images import IMAGE_EXTENSIONS, MAX_UPLOAD_BYTES, check_upload_size, load_image
from tlcore.paths import COLLECTED_DIR, collected_root, data_roots, is_inside, resolve_allowed, subdir

MAX_NAME_CHARS = 60
"""Longest dataset or class name. At up to 4 UTF-8 bytes a character, 60 stay below the
255-byte limit common file systems put on one folder name."""

MAX_CLASSES = 100
"""Most classes one collected dataset may have."""

MAX_DATASET_IMAGES = 10_000
"""Most images one collected dataset may hold: uploads fill a shared server's disk otherwise."""

MAX_IMAGE_BYTES = MAX_UPLOAD_BYTES
"""Largest single image accepted, checked before it is decoded."""

MAX_STORED_SIDE = int(setting(DatasetSpec, "image_size").bound.high)
"""Larger images are shrunk until their shorter side is this long: the largest image size
the studio trains at, so no model ever sees less detail than the original would give it."""

JPEG_QUALITY = 95
_JPEG_MAGIC = b"\xff\xd8\xff"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_DIGEST_CHARS = 16


@dataclass(frozen=True)
class CollectedDataset:
    """A collected dataset as it is on disk.

    Attributes:
        name: The dataset's name (its folder's name).
        path: Its folder, resolved.
        counts: Class name -> images stored, in class (folder) order.
    """

    name: str
    path: Path
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The ``DatasetSpec.source`` that trains on this dataset."""
        return f"folder:{self.path}"

    @property
    def classes(self) -> list[str]:
        return list(self.counts)

    @property
    def total_images(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class StoredImage:
    """One image added to a class.

    Attributes:
        name: The stored file's name, as :func:`list_images` and :func:`remove_image` use it.
        duplicate: The class already held these pixels, so nothing was written.
    """

    name: str
    duplicate: bool = False


@dataclass(frozen=True)
class AddReport:
    """What happened to each image of one batch added to a class.

    Attributes:
        added: Stored file names of the new images.
        duplicates: Names of the uploads whose image the class already held (not stored twice).
        refused: Upload name -> why it was refused (not an image, too large, in another class...).
    """

    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    refused: list[tuple[str, TLError]] = field(default_factory=list)


def check_name(name: str, what: str = "class") -> str:
    """The name as it will be stored (Unicode NFC, outer spaces removed), or why it cannot be.

    A name is a folder name and a label, so it may not hold a path separator, start with a dot
    (``.``, ``..`` and hidden folders, which dataset loaders skip), be a folder archivers add,
    or hold a control or formatting character (a line break would break ``labels.txt``, a
    direction override would show another name than the one stored).

    Raises:
        DatasetError: The name is empty, too long, or holds one of the above.
    """
    cleaned = unicodedata.normalize("NFC", name).strip()
    shown = visible_label(cleaned)
    fix = "Use letters, digits, spaces and punctuation (no slashes), and no leading dot."
    if not cleaned:
        raise DatasetError(f"The {what} name is empty.", f"Type a name for the {what}.")
    if len(cleaned) > MAX_NAME_CHARS:
        raise DatasetError(f"The {what} name is {len(cleaned)} characters long; at most "
                           f"{MAX_NAME_CHARS} are allowed.", "Choose a shorter name.")
    hidden = sum(1 for char in cleaned if is_invisible(char))
    if hidden:
        raise DatasetError(f"The {what} name '{shown}' holds {hidden} control or formatting "
                           "character(s) (line breaks, direction overrides) that would show it as "
                           "something else.", fix)
    if "/" in cleaned or "\\" in cleaned:
        raise DatasetError(f"The {what} name '{shown}' holds a path separator.", fix)
    if cleaned.startswith(".") or cleaned in IGNORED_FOLDERS:
        raise DatasetError(f"The {what} name '{shown}' would be a hidden or ignored folder.", fix)
    return cleaned


def list_datasets() -> list[str]:
    """Names of the collected datasets, sorted."""
    root = collected_root()
    return [folder.name for folder in visible_subfolders(root)] if root.is_dir() else []


def create_dataset(name: str) -> CollectedDataset:
    """Make a new, empty collected dataset.

    Raises:
        DatasetError: The name is not allowed, or a dataset with that name (in any case) exists.
    """
    name = check_name(name, "dataset")
    root = subdir(COLLECTED_DIR)
    _refuse_clash(name, list_datasets(), "dataset")
    try:
        (root / name).mkdir()
    except FileExistsError as exc:  # created by another session since the listing
        raise _exists(name, "dataset") from exc
    return open_dataset(name)


def open_dataset(name: str) -> CollectedDataset:
    """A collected dataset with its classes and image counts.

    Raises:
        DatasetError: The name is not allowed or no such dataset exists.
    """
    path = _dataset_dir(name)
    return CollectedDataset(path.name, path, {d.name: len(_image_files(d)) for d in visible_subfolders(path)})


def remove_dataset(name: str) -> None:
    """Delete a collected dataset with all its images.

    Raises:
        DatasetError: The name is not allowed or no such dataset exists.
    """
    _discard(_dataset_dir(name))


def add_class(dataset: str, class_name: str) -> CollectedDataset:
    """Add an empty class to a collected dataset.

    Raises:
        DatasetError: The dataset is missing, the name is not allowed or taken (in any case),
            or the dataset has :data:`MAX_CLASSES` classes already.
    """
    current = open_dataset(dataset)
    class_name = check_name(class_name, "class")
    _refuse_clash(class_name, current.classes, "class")
    if len(current.classes) >= MAX_CLASSES:
        raise DatasetError(f"The dataset {current.name!r} has {MAX_CLASSES} classes, the most allowed.",
                           "Remove a class first, or start another dataset.")
    try:
        (current.path / class_name).mkdir()
    except FileExistsError as exc:
        raise _exists(class_name, "class") from exc
    return open_dataset(dataset)


def remove_class(dataset: str, class_name: str) -> CollectedDataset:
    """Delete a class and its images; readers see the class whole or not at all.

    Raises:
        DatasetError: The dataset or the class does not exist.
    """
    _discard(_class_dir(open_dataset(dataset), class_name))
    return open_dataset(dataset)


def add_image(dataset: str, class_name: str, data: bytes, filename: str = "") -> StoredImage:
    """Validate one image and store it in a class.

    Args:
        dataset: The collected dataset.
        class_name: One of its classes.
        data: The upload's bytes, any format :func:`tlcore.images.load_image` accepts.
        filename: The upload's name; a sanitised part of it starts the stored name.

    Returns:
        The stored image; equal pixels give equal names, whatever the file's format or
        metadata, so an image the class holds already is not stored twice.

    Raises:
        UploadError: The upload is larger than :data:`MAX_IMAGE_BYTES`.
        BadImageError: It is empty, not an allowed image format, corrupt, or too many pixels.
        DatasetError: The dataset or class is missing, the image is already in another
            class, or the dataset is full (:data:`MAX_DATASET_IMAGES`).
        StorageError: The disk is full; nothing of the image is left on it.
    """
    current = open_dataset(dataset)
    class_dir = _class_dir(current, class_name)
    check_upload_size(len(data), MAX_IMAGE_BYTES, "Resize or re-compress the image and add it again.")
    pixels = load_image(data)
    digest = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()[:_DIGEST_CHARS]
    found = _find_digest(current.path, digest)
    if found is not None and found.parent.name == class_dir.name:
        return StoredImage(found.name, duplicate=True)
    if found is not None:
        raise DatasetError(f"This image is already in the class {found.parent.name!r}.",
                           "An image can belong to one class only; remove it there first if it "
                           "was put in the wrong one.")
    if current.total_images >= MAX_DATASET_IMAGES:
        raise DatasetError(f"The dataset {current.name!r} holds {MAX_DATASET_IMAGES} images, the most "
                           "allowed.", "Remove images you do not need, or start another dataset.")
    encoded, extension = _encode(pixels, lossy=data.startswith(_JPEG_MAGIC))
    target = class_dir / f"{_safe_stem(filename)}-{digest}{extension}"
    try:
        atomic_write(target, encoded)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise StorageError("The server's disk is full, so the image was not stored.",
                           "Ask the server's administrator for space, or remove images you do not "
                           "need.") from exc
    return StoredImage(target.name)


def add_images(dataset: str, class_name: str, uploads: Iterable[tuple[str, bytes]]) -> AddReport:
    """:func:`add_image` for each ``(filename, bytes)``; a refused image does not stop the rest.

    Raises:
        DatasetError: The dataset or the class does not exist.
    """
    _class_dir(open_dataset(dataset), class_name)
    report = AddReport()
    for filename, data in uploads:
        try:
            stored = add_image(dataset, class_name, data, filename)
        except TLError as exc:
            report.refused.append((filename, exc))
            continue
        if stored.duplicate:
            report.duplicates.append(filename)
        else:
            report.added.append(stored.name)
    return report


def list_images(dataset: str, class_name: str) -> list[Path]:
    """A class's stored images, newest first.

    Raises:
        DatasetError: The dataset or the class does not exist.
    """
    files = _image_files(_class_dir(open_dataset(dataset), class_name))
    return sorted(files, key=lambda path: (-path.stat().st_mtime_ns, path.name))


def remove_image(dataset: str, class_name: str, file_name: str) -> CollectedDataset:
    """Delete one stored image, named as :func:`list_images` names it.

    Raises:
        DatasetError: The dataset, the class or the image does not exist (a name with a path
            in it never does).
    """
    current = open_dataset(dataset)
    class_dir = _class_dir(current, class_name)
    if file_name not in {path.name for path in _image_files(class_dir)}:
        raise DatasetError(f"The class {class_name!r} has no image {file_name!r}.",
                           "It may have been removed already; the page shows what is left.")
    (class_dir / file_name).unlink(missing_ok=True)
    return open_dataset(dataset)


def ready_dataset(dataset: str) -> CollectedDataset:
    """Check that a collected dataset can be trained on, as the folder loader will, and return it.

    The images are stored as they are added; this is the last check before the dataset is
    handed to Configure: enough classes and images, and a folder the loader accepts.

    Raises:
        DatasetError: Fewer than 2 classes, a class with fewer than
            :data:`~tlcore.data.splits.MIN_IMAGES_PER_CLASS` images, or a folder outside the
            data roots.
    """
    current = open_dataset(dataset)
    if len(current.classes) < 2:
        raise DatasetError(f"The dataset {current.name!r} has {len(current.classes)} class(es); a "
                           "classifier needs at least 2 to tell apart.", "Add another class.")
    small = [f"{name!r} has {count}" for name, count in current.counts.items()
             if count < MIN_IMAGES_PER_CLASS]
    if small:
        raise DatasetError(f"Too few images: {', '.join(small)}. Every class needs at least "
                           f"{MIN_IMAGES_PER_CLASS} to be split into training, validation and test "
                           "images.", "Add more images to those classes, or remove them.")
    roots = data_roots()
    resolve_allowed(str(current.path), roots, "datasets", DatasetError)
    for class_dir in visible_subfolders(current.path):
        check_class_folder(class_dir, roots, f"The dataset {current.name!r}")
    return current


def _dataset_dir(name: str) -> Path:
    name = check_name(name, "dataset")
    root = collected_root().resolve()
    path = root / name
    if not path.is_dir() or not is_inside(path.resolve(), [root]):
        raise DatasetError(f"There is no collected dataset {name!r}.",
                           "Create it first, or pick one of the datasets listed.")
    return path


def _class_dir(dataset: CollectedDataset, class_name: str) -> Path:
    class_name = check_name(class_name, "class")
    if class_name not in dataset.counts:
        raise DatasetError(f"The dataset {dataset.name!r} has no class {class_name!r}.",
                           "Add the class first; it may have been removed in another session.")
    return dataset.path / class_name


def _refuse_clash(name: str, existing: list[str], what: str) -> None:
    """Refuse a name equal, ignoring case, to an existing one: on many disks they would be one folder."""
    for other in existing:
        if other.casefold() == name.casefold():
            raise _exists(other, what)


def _exists(name: str, what: str) -> DatasetError:
    return DatasetError(f"A {what} named {name!r} already exists.", f"Choose another name for the {what}.")


def _discard(folder: Path) -> None:
    """Remove a folder tree; it is renamed to a hidden name first, which loaders skip."""
    trash = folder.with_name(f".removing-{uuid.uuid4().hex}")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _image_files(class_dir: Path) -> list[Path]:
    """Stored images of a class (hidden files, such as writes in progress, excluded)."""
    return [entry for entry in class_dir.iterdir()
            if entry.is_file() and not entry.name.startswith(".")
            and entry.name.lower().endswith(IMAGE_EXTENSIONS)]


def _find_digest(dataset_dir: Path, digest: str) -> Path | None:
    """The stored image with these pixels, in any class of the dataset."""
    for class_dir in visible_subfolders(dataset_dir):
        for path in _image_files(class_dir):
            if path.stem.endswith(f"-{digest}"):
                return path
    return None


def _safe_stem(filename: str) -> str:
    return _UNSAFE.sub("-", Path(filename).stem).strip("-")[:40] or "image"


def _encode(pixels: np.ndarray, lossy: bool) -> tuple[bytes, str]:
    """Encode decoded pixels to store: JPEG for photos that were JPEG already, else PNG (lossless)."""
    image = Image.fromarray(pixels)
    shorter = min(image.size)
    if shorter > MAX_STORED_SIDE:
        scale = MAX_STORED_SIDE / shorter
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if lossy:
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue(), ".jpg"
    image.save(buffer, "PNG")
    return buffer.getvalue(), ".png"
