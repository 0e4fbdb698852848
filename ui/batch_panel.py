"""Compare's batch view: zips and many images classified by every chosen run, in flat memory.

The uploads go through :mod:`tlcore.deploy.batch`: a zip is copied to a temporary file and read
a member at a time, images are decoded a batch at a time, so the work costs the memory of one
batch however many photos there are. What is kept is a line per image (each run's answer), the
CSV, and small thumbnails: at most :data:`GALLERY_PAGE` per gallery filter, made while the
images stream past, so the gallery never needs the uploads again. The result is kept in the
session under the uploads, runs, top-k and threshold: changing the filter redraws it without
classifying again, and anything else replaces it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image
from streamlit.runtime.uploaded_file_manager import UploadedFile

from tlcore.data.uploads import check_zip_size
from tlcore.deploy.batch import BATCH, BatchAnswer, Source, classify_all, csv_rows, image_sources
from tlcore.deploy.serving import NOT_SURE, LoadedRun
from tlcore.errors import TLError
from tlcore.images import IMAGE_EXTENSIONS, check_upload_size, load_image
from tlcore.records import RunRecord
from ui import glue

GALLERY_PAGE = 60
"""Thumbnails kept, and shown, per gallery filter."""
THUMBNAIL_SIDE = 128
RESULT = "compare.batch.result"
"""Session key of ``(key, BatchResult)``: the last batch classified in this session."""
SHOW = "compare.batch.show"
ALL, DISAGREE, ANSWERED = "all", "disagree", "answered:"
"""Gallery filters: every image, those the runs answer differently, those a run answered a class."""
COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageRow:
    """One image's answers, in the order of the runs (a class, or "not sure")."""

    image: str
    answers: tuple[str, ...]
    probabilities: tuple[float, ...]
    """Each run's probability of its most likely class."""

    @property
    def agree(self) -> bool:
        return len(set(self.answers)) == 1

    def filters(self) -> list[str]:
        """The gallery filters that show this image."""
        answered = [ANSWERED + answer for answer in dict.fromkeys(self.answers)]
        return [ALL, *([] if self.agree else [DISAGREE]), *answered]


@dataclass(frozen=True)
class Thumbnail:
    caption: str
    picture: bytes
    """A JPEG at most :data:`THUMBNAIL_SIDE` pixels a side."""


@dataclass(frozen=True)
class BatchResult:
    """What the batch view shows, without the images: rows, unreadable files, CSV, thumbnails."""

    run_ids: tuple[str, ...]
    rows: tuple[ImageRow, ...]
    unreadable: tuple[tuple[str, str], ...]
    """(file, why it could not be classified)."""
    csv: str
    gallery: Mapping[str, tuple[Thumbnail, ...]]
    left_out: tuple[str, ...] = ()
    """Why runs that could not be loaded are missing."""


def is_zip(upload: UploadedFile) -> bool:
    return upload.name.lower().endswith(".zip")


# ---- classifying: uploads -> sources -> answers -> rows ---------------------------------


class _UniqueNames:
    """Names as uploaded, with `` (2)``, `` (3)``... for a name seen before (two ``a.png``)."""

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()

    def __call__(self, name: str) -> str:
        self._seen[name] += 1
        return name if self._seen[name] == 1 else f"{name} ({self._seen[name]})"


def _refused(name: str, exc: TLError) -> BatchAnswer:
    return BatchAnswer(name, "", None, [], str(exc))


def upload_sources(uploads: Iterable[UploadedFile], folder: Path) -> Iterator[Source | BatchAnswer]:
    """Every image of the uploads, by the name people gave it: an image file, or each member of
    a zip (copied into ``folder`` for :func:`~tlcore.deploy.batch.image_sources`) as
    ``photos.zip:cats/01.jpg``; files refused before decoding come as answers with the reason."""
    unique = _UniqueNames()
    for number, upload in enumerate(uploads):
        if is_zip(upload):
            yield from _zip_members(upload, folder / f"{number}.zip", unique)
            continue
        try:
            check_upload_size(upload.size)
        except TLError as exc:
            yield _refused(unique(upload.name), exc)
            continue
        yield Source(unique(upload.name), upload.getvalue())


def _zip_members(upload: UploadedFile, path: Path, unique: _UniqueNames) -> Iterator[Source | BatchAnswer]:
    try:
        check_zip_size(upload.size)
        upload.seek(0)
        with path.open("wb") as copy:
            shutil.copyfileobj(upload, copy, COPY_CHUNK)
    except TLError as exc:
        yield _refused(unique(upload.name), exc)
        return
    except OSError as exc:
        yield BatchAnswer(unique(upload.name), "", None, [],
                          f"The zip could not be saved on the server to be read ({exc.strerror}).")
        return
    for item in image_sources([str(path)]):  # named "<path>:<member>", or "<path>" when unreadable
        shown = unique(upload.name + _name_of(item).removeprefix(str(path)))
        yield (dataclasses.replace(item, name=shown) if isinstance(item, Source)
               else dataclasses.replace(item, image=shown))


def _name_of(item: Source | BatchAnswer) -> str:
    return item.name if isinstance(item, Source) else item.image


def expected_images(uploads: Sequence[UploadedFile]) -> int:
    """About how many images the uploads hold (a zip's image members), for the progress bar."""
    total = 0
    for upload in uploads:
        if not is_zip(upload):
            total += 1
            continue
        try:
            upload.seek(0)
            with zipfile.ZipFile(upload) as archive:  # reads the central directory only
                total += sum(1 for m in archive.infolist()
                             if not m.is_dir() and m.filename.lower().endswith(IMAGE_EXTENSIONS)) or 1
        except (zipfile.BadZipFile, OSError, ValueError):
            total += 1
    return max(total, 1)


def short_name(image: str) -> str:
    """An image's file name without its folders or zip (``photos.zip:cats/01.jpg``: ``01.jpg``)."""
    return image.rpartition("/")[2].rpartition(":")[2]


def thumbnail(data: bytes | str) -> bytes | None:
    """A small JPEG of an image for the gallery, or None when it cannot be decoded after all."""
    try:
        picture = Image.fromarray(load_image(data))
    except TLError:
        return None
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


class Collector:
    """Turns the stream of answers into rows, unreadable files and thumbnails, image by image.

    An image is complete once every run has answered it; only then is its thumbnail made (if a
    filter it belongs to still has room) and its bytes let go, so at most a batch is held.
    """

    def __init__(self, run_ids: Sequence[str], progress: Callable[[int], None] = lambda done: None) -> None:
        self.run_ids = tuple(run_ids)
        self._progress = progress
        self._pending: dict[str, bytes | str] = {}
        self._answers: dict[str, dict[str, BatchAnswer]] = {}
        self.rows: list[ImageRow] = []
        self.unreadable: list[tuple[str, str]] = []
        self.gallery: dict[str, list[Thumbnail]] = {}

    def remember(self, sources: Iterable[Source | BatchAnswer]) -> Iterator[Source | BatchAnswer]:
        """``sources`` as they are, keeping each image's bytes until it is complete."""
        for item in sources:
            if isinstance(item, Source):
                self._pending[item.name] = item.data
            yield item

    def watch(self, answers: Iterable[BatchAnswer]) -> Iterator[BatchAnswer]:
        """``answers`` as they are, each one collected on the way."""
        for answer in answers:
            got = self._answers.setdefault(answer.image, {})
            got[answer.run_id] = answer
            if len(got) == len(self.run_ids):
                del self._answers[answer.image]
                self._complete(answer.image, [got[run_id] for run_id in self.run_ids],
                               self._pending.pop(answer.image, None))
            yield answer

    @property
    def done(self) -> int:
        return len(self.rows) + len(self.unreadable)

    def _complete(self, image: str, answers: list[BatchAnswer], data: bytes | str | None) -> None:
        error = next((a.error for a in answers if a.error), None)
        if error is not None:
            self.unreadable.append((image, error))
        else:
            row = ImageRow(image, tuple(a.answer or NOT_SURE for a in answers),
                           tuple(a.top[0][1] if a.top else 0.0 for a in answers))
            self.rows.append(row)
            self._add_thumbnail(row, data)
        if self.done % BATCH == 0:
            self._progress(self.done)

    def _add_thumbnail(self, row: ImageRow, data: bytes | str | None) -> None:
        wanted = [name for name in row.filters() if len(self.gallery.get(name, ())) < GALLERY_PAGE]
        picture = thumbnail(data) if wanted and data is not None else None
        if picture is None:
            return
        answers = " | ".join(glue.literal(f"{answer} {p:.0%}")
                             for answer, p in zip(row.answers, row.probabilities, strict=True))
        caption = f"{glue.literal(short_name(row.image))}: {answers}"
        for name in wanted:
            self.gallery.setdefault(name, []).append(Thumbnail(caption, picture))

    def result(self, csv_text: str, left_out: Sequence[str] = ()) -> BatchResult:
        return BatchResult(self.run_ids, tuple(self.rows), tuple(self.unreadable), csv_text,
                           {name: tuple(shown) for name, shown in self.gallery.items()}, tuple(left_out))


def classify_uploads(uploads: Sequence[UploadedFile], loaded: Sequence[LoadedRun], top_k: int,
                     threshold: float | None,
                     progress: Callable[[int], None] = lambda done: None) -> BatchResult:
    """Every run's answer for every image of the uploads, streamed a batch at a time.

    Raises:
        ConfigError: ``top_k`` or ``threshold`` is out of range for a run.
    """
    collector = Collector([run.run_id for run in loaded], progress)
    buffer = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="tlstudio-batch-") as folder:
        sources = collector.remember(upload_sources(uploads, Path(folder)))
        answers = collector.watch(classify_all(loaded, sources, top_k, threshold))
        csv.writer(buffer).writerows(csv_rows(answers))
    return collector.result(buffer.getvalue())


# ---- the view ----------------------------------------------------------------------------


def batch_section(uploads: Sequence[UploadedFile], runs: list[RunRecord], labels: dict[str, str],
                  top_k: int, threshold: float | None) -> None:
    """The batch's answers: classified once per uploads and settings, then read from the session."""
    key = (tuple(u.file_id for u in uploads), tuple((r.id, r.finished_at) for r in runs), top_k, threshold)
    stored = st.session_state.get(RESULT)
    if stored is None or stored[0] != key:
        st.session_state.pop(RESULT, None)  # let the last batch go before the next one is built
        result = _classify_with_progress(uploads, runs, top_k, threshold)
        if result is None:
            return
        st.session_state[RESULT] = (key, result)
    else:
        result = stored[1]
    show_result(result, labels)


def forget() -> None:
    """Let the session's last batch go once its uploads are no longer shown as one."""
    st.session_state.pop(RESULT, None)


def _classify_with_progress(uploads: Sequence[UploadedFile], runs: list[RunRecord], top_k: int,
                            threshold: float | None) -> BatchResult | None:
    loaded, left_out = [], []
    for run in runs:
        try:
            loaded.append(glue.loaded_run(run.id))
        except Exception as exc:  # noqa: BLE001 - the other runs still answer
            left_out.append(f"Run {run.id} is left out: {glue.describe_error(exc, f'loading run {run.id}')}")
    if not loaded:
        for reason in left_out:
            st.error(reason, icon=":material/error:")
        return None
    total = expected_images(uploads)
    bar = st.progress(0.0, text=f"Classifying about {total:,} image(s)…")

    def progress(done: int) -> None:
        bar.progress(min(done / total, 1.0), text=f"Classified {done:,} of about {total:,} image(s)…")

    try:
        result = glue.attempt(classify_uploads, uploads, loaded, top_k, threshold, progress,
                              doing="classifying the uploads")
    finally:
        bar.empty()
    return dataclasses.replace(result, left_out=tuple(left_out)) if result else None


def show_result(result: BatchResult, labels: dict[str, str]) -> None:
    """Counts, the filter, the table, the gallery, the files that could not be read, the CSV."""
    for reason in result.left_out:
        st.warning(reason, icon=":material/warning:")
    rows = result.rows
    counts = Counter(name for row in rows for name in row.filters())
    disagree = f"; the runs disagree on {counts[DISAGREE]:,}" if len(result.run_ids) > 1 else ""
    st.markdown(f"**{len(rows):,}** image(s) classified by {len(result.run_ids)} run(s){disagree}"
                + (f"; **{len(result.unreadable):,}** could not be read" if result.unreadable else "") + ".")
    choice = _filter(result, counts)
    shown = [row for row in rows if choice in row.filters()]
    st.dataframe(answers_table(shown, result.run_ids, labels), hide_index=True, key="compare.batch.table",
                 column_config={f"{labels[run_id]} %": st.column_config.NumberColumn(
                     "probability", format="%.1f%%", help=f"{labels[run_id]}: how likely its answer is")
                     for run_id in result.run_ids})
    _gallery(result.gallery.get(choice, ()), len(shown), [labels[run_id] for run_id in result.run_ids])
    if result.unreadable:
        st.subheader(f"{len(result.unreadable):,} file(s) could not be classified")
        st.dataframe(pd.DataFrame(result.unreadable, columns=["file", "reason"]), hide_index=True,
                     key="compare.batch.unreadable", column_config={"reason": st.column_config.TextColumn(
                         width="large")})
    st.download_button("Answers as CSV (one row per image and run)", result.csv, "answers.csv", "text/csv",
                       key="compare.batch.csv", on_click="ignore", icon=":material/download:")


def answers_table(rows: Sequence[ImageRow], run_ids: Sequence[str], labels: dict[str, str]) -> pd.DataFrame:
    """One row per image: each run's answer and its probability (in percent, as the page shows
    shares everywhere: ``96.7%``), and whether the runs agree."""
    columns: dict[str, list[object]] = {"image": [row.image for row in rows]}
    for position, run_id in enumerate(run_ids):
        columns[labels[run_id]] = [row.answers[position] for row in rows]
        columns[f"{labels[run_id]} %"] = [100 * row.probabilities[position] for row in rows]
    if len(run_ids) > 1:
        columns["runs agree"] = [row.agree for row in rows]
    return pd.DataFrame(columns)


def _filter(result: BatchResult, counts: Counter[str]) -> str:
    options = [ALL, *([DISAGREE] if len(result.run_ids) > 1 else []),
               *sorted(name for name in counts if name.startswith(ANSWERED))]
    if st.session_state.get(SHOW) not in options:
        st.session_state.pop(SHOW, None)  # a filter of the last batch this one does not have
    by_a_run = " by a run" if len(result.run_ids) > 1 else ""

    def describe(name: str) -> str:
        if name == ALL:
            return f"all images ({counts[ALL]:,})"
        if name == DISAGREE:
            return f"where the runs disagree ({counts[DISAGREE]:,})"
        return f"answered “{name.removeprefix(ANSWERED)}”{by_a_run} ({counts[name]:,})"

    return st.selectbox("Show", options, format_func=describe, key=SHOW,
                        help="Filters the table and the gallery; the CSV always has every image.")


def _gallery(thumbnails: Sequence[Thumbnail], matching: int, run_labels: list[str]) -> None:
    if not thumbnails:
        st.caption("No images to show here.")
        return
    st.caption(f"Under each image: its name, then the answers of {glue.literal(' | '.join(run_labels))}.")
    st.image([t.picture for t in thumbnails], width=112, caption=[t.caption for t in thumbnails])
    if matching > len(thumbnails):
        st.caption(f"The first {len(thumbnails)} of {matching:,} are shown; "
                   "the table and the CSV have them all.")
