"""``zip:PATH``: a zip of class folders, extracted safely once and then read as a folder.

Archives come from uploads, so extraction trusts nothing in them: member paths are checked
before anything is written, links are refused, and sizes are counted from the bytes
actually inflated (a zip bomb's headers can claim anything). Extraction happens in a
staging folder that is renamed into place only when complete, so a refused archive
leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tlcore.config import DatasetSpec
from tlcore.data.assemble import bundle_from_catalogue
from tlcore.data.bundle import DatasetBundle, Progress
from tlcore.data.catalogue import Catalogue
from tlcore.data.folder import has_visible_files, list_class_tree, visible_subfolders
from tlcore.errors import DatasetError, UploadError
from tlcore.paths import data_roots, resolve_allowed, subdir, tl_home

MAX_EXTRACTED_BYTES = 2 * 1024**3
"""Largest total size an archive may inflate to."""

MAX_ARCHIVE_FILES = 50_000
"""Most entries an archive may hold."""

MAX_INFLATION_RATIO = 100
"""Most times its own size an archive may inflate to (past :data:`RATIO_FREE_BYTES`).

JPEG and PNG images barely compress, so a dataset zip inflates to about its own size; zeros
deflate about a thousand times, so without this a 2 MB upload kept 2 GB of disk."""

RATIO_FREE_BYTES = 32 * 1024**2
"""Inflated bytes allowed whatever the ratio: small archives of flat synthetic images."""

_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


def load_zip(spec: DatasetSpec, progress: Progress | None = None) -> DatasetBundle:
    """Extract ``zip:PATH`` (once per distinct archive) and load its class folders."""
    return bundle_from_catalogue(list_zip(spec), spec, progress)


def list_zip(spec: DatasetSpec) -> Catalogue:
    """Extract ``zip:PATH`` (once per distinct archive) and catalogue its class folders.

    The archive may hold the class folders at its top level or inside one enclosing
    folder (``flowers/daisy/...``), as zipping a dataset folder usually produces.

    Raises:
        DatasetError: The path is outside the allowed folders or is not a file, or the
            classes cannot be split.
        UploadError: The archive is corrupt or unsafe.
    """
    archive = resolve_allowed(
        spec.location, [*data_roots(), tl_home().resolve()], "datasets", DatasetError
    )
    if not archive.is_file():
        raise DatasetError(
            f"Zip archive {spec.location!r} does not exist or is not a file.",
            "Give the path of a .zip file that holds one folder per class.",
        )
    extracted = subdir("uploads") / _sha256(archive)[:16]
    if not extracted.is_dir():
        safe_extract(archive, extracted)
    return list_class_tree(_class_root(extracted), [extracted], spec, "The archive")


def safe_extract(
    zip_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    max_total_bytes: int = MAX_EXTRACTED_BYTES,
    max_files: int = MAX_ARCHIVE_FILES,
) -> Path:
    """Extract a zip archive into ``dest``, refusing anything unsafe.

    Args:
        zip_path: The archive.
        dest: Folder to create with the archive's contents. If another process creates it
            first (extracting the same archive), its copy is kept.
        max_total_bytes: Most bytes all members may inflate to, counted while writing.
        max_files: Most entries the archive may hold.

    Returns:
        ``dest`` as a Path.

    Raises:
        UploadError: The archive is corrupt, encrypted, too large, has too many entries,
            or holds an absolute path, a ``..`` component, a drive letter or a link.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        with _as_upload_error(), zipfile.ZipFile(zip_path) as archive:
            budget = _Budget(max_total_bytes, os.path.getsize(zip_path))
            _extract_members(archive, staging, budget, max_files)
        _publish(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


@contextmanager
def _as_upload_error() -> Iterator[None]:
    """Turn the many ways zipfile reports a damaged archive into one UploadError."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            UnicodeDecodeError) as exc:  # a name flagged UTF-8 that is not
        raise UploadError(
            f"The archive could not be read: {exc}.",
            "Re-create it as a standard, unencrypted .zip and upload it again.",
        ) from exc
    except RuntimeError as exc:  # zipfile's signal for encrypted members
        raise UploadError(
            f"The archive could not be read: {exc}.", "Upload an archive without a password."
        ) from exc


def _extract_members(
    archive: zipfile.ZipFile, staging: Path, budget: _Budget, max_files: int
) -> None:
    """Check every member first, then write them while counting inflated bytes."""
    members = archive.infolist()
    if len(members) > max_files:
        raise UploadError(
            f"The archive holds {len(members)} entries; at most {max_files} are allowed.",
            "Split the dataset into smaller archives or use a folder on the server.",
        )
    targets = _unique_targets(members)
    written = 0
    for info, relative in targets:
        target = staging.joinpath(*relative.parts)
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = _copy_capped(archive, info, target, written, budget)
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise _member_error(info, exc) from exc


def _unique_targets(members: list[zipfile.ZipInfo]) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Each member with its safe path; two members that land on one path are refused.

    Extracting both would silently keep the last one, so the archive would train on other
    images than the ones its author sees in it. A folder entry repeated is harmless.
    """
    seen: dict[PurePosixPath, zipfile.ZipInfo] = {}
    targets = []
    for info in members:
        relative = _member_path(info)
        if relative is None:
            continue
        earlier = seen.get(relative)
        if earlier is not None and not (earlier.is_dir() and info.is_dir()):
            raise UploadError(
                f"The archive holds {info.filename!r} twice (or under two spellings of one "
                "path); only one of them could be used.",
                "Re-create the archive from the dataset folder, so every file appears once.",
            )
        seen[relative] = info
        targets.append((info, relative))
    return targets


def _member_error(info: zipfile.ZipInfo, exc: BaseException) -> UploadError:
    """What went wrong with one member, named as it is inside the archive (no server paths)."""
    if isinstance(exc, (NotADirectoryError, FileExistsError, IsADirectoryError)):
        return UploadError(
            f"The archive member {info.filename!r} clashes with another member: one path is "
            "both a file and a folder.",
            "Rename the file or the folder in the dataset and zip it again.",
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return UploadError(
            f"The server's disk filled up while extracting {info.filename!r}.",
            "Ask the server's administrator to free space, then upload the archive again.",
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
        reason = "its compressed data is damaged"
    return UploadError(
        f"The archive member {info.filename!r} could not be read: {reason}.",
        "Re-create the archive as a standard, unencrypted .zip and upload it again.",
    )


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's safe relative path, or None for a member naming the root itself.

    Raises:
        UploadError: The member is a link, or its path is absolute, has a drive letter or
            climbs out with ``..``.
    """
    name = info.filename.replace("\\", "/")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UploadError(
            f"The archive contains a symbolic link ({info.filename!r}).",
            "Archive the real files instead of links to them.",
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or _DRIVE.match(name) or ".." in parts:
        raise UploadError(
            f"The archive contains an unsafe path ({info.filename!r}).",
            "Archives may only hold relative paths inside themselves; re-create it from "
            "the dataset folder.",
        )
    return PurePosixPath(*parts) if parts else None


@dataclass(frozen=True)
class _Budget:
    """How many bytes an archive may inflate to: a fixed total, and a multiple of its own size."""

    max_bytes: int
    archive_bytes: int

    def check(self, written: int) -> None:
        """Refuse the archive once ``written`` bytes exceed either limit."""
        if written > self.max_bytes:
            raise UploadError(
                f"The archive inflates to more than {self.max_bytes / 2**20:.0f} MB.",
                "Upload a smaller dataset or use a folder on the server.",
            )
        if written > max(RATIO_FREE_BYTES, MAX_INFLATION_RATIO * self.archive_bytes):
            raise UploadError(
                f"The archive unpacks to more than {MAX_INFLATION_RATIO} times its own size "
                f"({self.archive_bytes / 2**20:.1f} MB), as zip bombs do; image datasets hardly compress.",
                "Zip a folder of JPEG or PNG images (raw pixels such as BMP compress too well), "
                "or use a folder on the server.",
            )


def _copy_capped(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written: int, budget: _Budget
) -> int:
    """Inflate one member into ``target``; return the running total of bytes written."""
    with archive.open(info) as source, open(target, "wb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            budget.check(written)
            sink.write(chunk)
    return written


def _publish(staging: Path, dest: Path) -> None:
    """Move the finished extraction into place; keep a copy another process published."""
    try:
        staging.rename(dest)
    except OSError:
        if not dest.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)


def _class_root(extracted: Path) -> Path:
    """The folder whose sub-folders are the classes, skipping enclosing folders.

    Descends while a folder holds exactly one visible sub-folder and no visible files
    (``__MACOSX`` and hidden entries do not count), unless that sub-folder is a class
    itself: files and no sub-folders. So ``toys/only/*.png`` is one class, ``only``, and
    not an archive without classes.
    """
    root = extracted
    while True:
        subfolders = visible_subfolders(root)
        if len(subfolders) != 1 or has_visible_files(root) or _is_class(subfolders[0]):
            return root
        root = subfolders[0]


def _is_class(folder: Path) -> bool:
    """A folder of files without sub-folders: a class, never an enclosing folder."""
    return has_visible_files(folder) and not visible_subfolders(folder)


def _sha256(path: Path) -> str:
    """Digest of the archive's bytes: equal uploads share one extraction."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
