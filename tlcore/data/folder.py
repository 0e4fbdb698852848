"""``folder:PATH``: one sub-folder of images per class.

On a shared server the path is typed by a user, so it must resolve (symlinks followed)
inside one of the data roots, and every image file must too: a link inside a class folder
that points elsewhere is skipped, not read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tlcore.config import DatasetSpec
from tlcore.data.assemble import bundle_from_catalogue
from tlcore.data.bundle import DatasetBundle, Progress
from tlcore.data.catalogue import Catalogue, parallel_decoder
from tlcore.data.file_identity import file_identities
from tlcore.data.labels import is_invisible, visible_label
from tlcore.errors import BadImageError, DatasetError, StorageError
from tlcore.images import IMAGE_EXTENSIONS, load_image
from tlcore.paths import data_roots, is_inside, resolve_allowed, tl_home

IDENTITY_MEMO = "identities.sqlite"
"""In ``TL_HOME``: file identities by path and stat, so a listing reads no file it read before."""

IGNORED_FOLDERS = ("__MACOSX",)
"""Folders that archivers add and that never hold a class (hidden ones are skipped too)."""


def load_folder(spec: DatasetSpec, progress: Progress | None = None) -> DatasetBundle:
    """Load ``folder:PATH``, a folder with one sub-folder of images per class.

    Raises:
        DatasetError: The folder is outside the data roots, missing, not a folder, or its
            classes cannot be split.
    """
    return bundle_from_catalogue(list_folder(spec), spec, progress)


def folder_root(spec: DatasetSpec, roots: Sequence[Path]) -> Path:
    """The dataset folder ``spec`` names, resolved inside ``roots``.

    Raises:
        DatasetError: It lies outside the data roots, does not exist or is not a folder.
    """
    root = resolve_allowed(spec.location, roots, "datasets", DatasetError)
    if not root.is_dir():
        raise DatasetError(
            f"{spec.location!r} {'is not a folder' if root.exists() else 'does not exist'}.",
            "Give the folder that holds one sub-folder per class (use zip:PATH for archives).",
        )
    return root


def list_folder(spec: DatasetSpec) -> Catalogue:
    """The catalogue of ``folder:PATH`` (checked as :func:`load_folder` checks it)."""
    roots = data_roots()
    return list_class_tree(folder_root(spec, roots), roots, spec, f"The folder {spec.location!r}")


def load_class_tree(
    root: Path,
    allowed: Sequence[Path],
    spec: DatasetSpec,
    where: str,
    progress: Progress | None = None,
) -> DatasetBundle:
    """Load the class folders under ``root`` (see :func:`list_class_tree`)."""
    return bundle_from_catalogue(list_class_tree(root, allowed, spec, where), spec, progress)


def list_class_tree(root: Path, allowed: Sequence[Path], spec: DatasetSpec, where: str) -> Catalogue:
    """Catalogue the class folders under ``root``; files must resolve inside ``allowed``.

    Image files are found recursively in each class folder (extensions from
    :data:`~tlcore.images.IMAGE_EXTENSIONS`, any case); hidden files and folders and other
    files are ignored. ``where`` names ``root`` in messages ("The folder '~/flowers'",
    "The archive").

    Raises:
        DatasetError: ``root`` has no class sub-folders.
    """
    class_dirs = visible_subfolders(root)
    if not class_dirs:
        raise _no_class_folders(root, where)
    for class_dir in class_dirs:
        check_class_folder(class_dir, allowed, where)
    files = [_image_files(str(class_dir)) for class_dir in class_dirs]
    paths = [path for class_files in files for path in class_files]
    prefix = len(str(root)) + 1
    identities = file_identities(paths, identity_memo(), str(root))

    def read(index: int, size: int) -> np.ndarray:
        # The folders on the way were checked when listed (class folders resolved inside
        # ``allowed``, links to folders not followed), so only a file that is itself a link
        # needs resolving: one lstat per image instead of one per path component.
        path = paths[index]
        if os.path.islink(path) and not is_inside(Path(path).resolve(), allowed):
            raise BadImageError("It links to a file outside the allowed data folders.")
        return load_image(path, size)

    return Catalogue(
        ids=[printable(path[prefix:]) for path in paths],
        labels=np.repeat(np.arange(len(files), dtype=np.int32), [len(f) for f in files]),
        class_names=[printable(d.name) for d in class_dirs],
        identities=[identity or f"unreadable:{printable(path)}"
                    for identity, path in zip(identities, paths, strict=True)],
        decode=parallel_decoder(read),
    )


def identity_memo() -> Path | None:
    """Where file identities are remembered between listings (None when TL_HOME cannot hold it)."""
    try:
        home = tl_home()
    except StorageError:  # TL_HOME is a file, or cannot be made: list without remembering
        return None
    return home / IDENTITY_MEMO if os.access(home, os.W_OK) else None


def visible_subfolders(folder: Path) -> list[Path]:
    """Sub-folders that can be classes, sorted by name."""
    return sorted(
        (entry for entry in folder.iterdir() if entry.is_dir() and _is_visible(entry.name)),
        key=lambda entry: entry.name,
    )


def check_class_folder(class_dir: Path, allowed: Sequence[Path], where: str) -> None:
    """Refuse a class folder that leads outside ``allowed`` or whose name cannot be a label.

    A class folder that is a link to ``/`` would have every file under it listed, stat'ed and
    shown as skipped, so the folder is checked before anything inside it is read, and the
    message never says where the link points. A name holding a line break or another control
    or formatting character (a right-to-left override) would print as something else and
    break every line-based list of labels, such as ``labels.txt``.

    Raises:
        DatasetError: The folder resolves outside ``allowed``, or its name is not printable.
    """
    shown = printable(class_dir.name)
    if not is_inside(class_dir.resolve(), allowed):
        raise DatasetError(
            f"{where} has a class folder {shown!r} that links outside the folders datasets may "
            "be read from.",
            "Copy that class's images into the dataset folder instead of linking to them.",
        )
    hidden = [char for char in shown if is_invisible(char)]
    if hidden:
        raise DatasetError(
            f"{where} has a class folder named '{visible_label(shown)}', which "
            f"holds {len(hidden)} control or formatting character(s) (line breaks, direction "
            "overrides) that would show its label as something else.",
            "Rename the folder with letters, digits, spaces and punctuation only.",
        )


def _no_class_folders(root: Path, where: str) -> DatasetError:
    """Say what was found instead of class folders: images lying loose, or nothing at all.

    Images directly in ``root`` usually mean one class's folder was given (or zipped) on its
    own, or unsorted images; either way the fix is sub-folders, one per class.
    """
    loose = sum(1 for entry in root.iterdir() if entry.is_file() and _is_image_name(entry.name))
    found = f"holds {loose} image(s) directly but no class sub-folders" if loose else (
        "has no class sub-folders (no classes)")
    return DatasetError(
        f"{where} {found}; a classifier needs at least 2 classes, one sub-folder of images each.",
        "Put each class's images in a sub-folder of its own, named after the class "
        "(cats/, dogs/, ...).",
    )


def has_visible_files(folder: Path) -> bool:
    """Whether ``folder`` directly holds any file that is not hidden."""
    return any(entry.is_file() and _is_visible(entry.name) for entry in folder.iterdir())


def printable(name: str) -> str:
    r"""A file name that can always be shown and stored as UTF-8.

    Names that are not valid UTF-8 arrive as surrogate escapes, which crash on encoding;
    their bad bytes are spelled as ``\xNN`` instead, which keeps distinct names distinct.
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _image_files(class_dir: str) -> list[str]:
    """Visible image files anywhere below ``class_dir``, sorted by path.

    Plain strings and ``os.scandir``: a folder of 100,000 photos is listed in a fraction of a
    second (``pathlib`` objects cost several times that). Links to folders are not followed.
    """
    found, folders = [], [class_dir]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if not _is_visible(entry.name):
                    continue
                if entry.is_dir():
                    if not entry.is_symlink():
                        folders.append(entry.path)
                elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    found.append(entry.path)
    return sorted(found)


def _is_image_name(name: str) -> bool:
    return _is_visible(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def _is_visible(name: str) -> bool:
    return not name.startswith(".") and name not in IGNORED_FOLDERS
