"""Saving uploaded archives on the server, so they can be used as ``zip:PATH`` datasets.

Uploads are stored by content: the same archive uploaded twice is kept once, and its path
(hence the dataset spec and the run key) is the same both times. The stored name ends with the
name the archive was uploaded under, so pages can call it that (:func:`source_label`) instead of
showing a server path. Extraction and every safety check of the archive's members happen
later, in :mod:`tlcore.data.archive`; here only the size cap and the zip signature are checked,
before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

from tlcore.errors import UploadError
from tlcore.files import atomic_write
from tlcore.images import check_upload_size
from tlcore.paths import subdir

MAX_ZIP_UPLOAD_BYTES = 200 * 1024 * 1024
"""Largest dataset archive accepted; ``server.maxUploadSize`` in .streamlit/config.toml matches."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DIGEST_CHARS = 16
_STORED_NAME = re.compile(rf"[0-9a-f]{{{_DIGEST_CHARS}}}-(?P<name>[A-Za-z0-9._-]+\.zip)")
"""A stored upload's file name: the content digest, then the (sanitised) uploaded name."""


def archives_dir() -> Path:
    """Where uploaded archives live (inside ``TL_HOME``, which ``zip:`` sources may read)."""
    return subdir("uploads") / "archives"


def check_zip_size(n_bytes: int) -> None:
    """Refuse an archive larger than :data:`MAX_ZIP_UPLOAD_BYTES` before reading it.

    Raises:
        UploadError: The archive is too large.
    """
    check_upload_size(
        n_bytes,
        MAX_ZIP_UPLOAD_BYTES,
        "Upload a subset, or put the images in a folder on the server and use that folder.",
    )


def save_upload(data: bytes, filename: str) -> Path:
    """Store an uploaded zip archive and return its path for a ``zip:PATH`` source.

    Args:
        data: The archive's bytes.
        filename: The name the user's file had; only used, sanitised, in the stored name.

    Returns:
        The stored archive's path; equal bytes always map to the same path.

    Raises:
        UploadError: Empty, too large, or not a zip archive.
    """
    if not data:
        raise UploadError("The uploaded file is empty.", "Upload a .zip with one folder per class.")
    check_zip_size(len(data))
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise UploadError(
            f"{Path(filename).name!r} is not a zip archive.",
            "Zip a folder that holds one sub-folder of images per class and upload that.",
        )
    stem = _UNSAFE.sub("-", Path(filename).stem).strip(".-")[:40] or "upload"
    digest = hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]
    folder = archives_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{digest}-{stem}.zip"
    if not target.is_file():
        atomic_write(target, data)
    return target


def uploaded_name(path: str | Path) -> str | None:
    """The name an archive stored by :func:`save_upload` was uploaded under, else ``None``.

    Read from the stored path alone (``…/uploads/archives/0ec8f1edbdf63cc3-cats_vs_dogs.zip``
    gives ``cats_vs_dogs.zip``), so runs recorded in another home or by a worker are named
    the same way. Characters the stored name could not keep are dashes.
    """
    path = Path(path)
    match = _STORED_NAME.fullmatch(path.name)
    if match is None or path.parent.parts[-2:] != ("uploads", "archives"):
        return None
    return match["name"]


def source_label(source: str) -> str:
    """A dataset source as people read it: an uploaded zip by its uploaded name.

    ``zip:/srv/tl/uploads/archives/0ec8f1edbdf63cc3-cats_vs_dogs.zip`` is shown as
    ``cats_vs_dogs.zip``; every other source as written (the CLI keeps the full path).
    """
    kind, _, location = source.partition(":")
    return (kind == "zip" and uploaded_name(location)) or source
