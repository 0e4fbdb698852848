"""Compare's "Is the difference real?": two runs paired image by image on one test split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from tlcore.data.labels import visible_label
from tlcore.errors import TLError
from tlcore.records import RunRecord
from tlcore.report.paired import Disagreement, PairedComparison
from tlcore.report.summaries import format_percent
from tlcore.runs.pairing import image_files
from ui import glue
from ui.batch_panel import thumbnail

SHOWN_DISAGREEMENTS = 30
"""Rows of the disagreements table (images without a file, or past the gallery's)."""
SHOWN_THUMBNAILS = 24
"""Disagreements drawn as thumbnails, when the dataset keeps its images as files."""
THUMBNAIL_WIDTH = 96
SCORE_COLUMNS = tuple(f"{metric} {column}" for metric in ("precision", "recall", "F1")
                      for column in ("A", "B", "B - A"))


def paired_section(runs: list[RunRecord], labels: dict[str, str]) -> None:
    """The verdict in a sentence, each accuracy's interval, per-class deltas, the disagreements."""
    st.header("Is the difference real?")
    if len(runs) != 2:
        st.caption("Pick exactly two runs to compare them image by image (McNemar's exact test).")
        return
    try:
        comparison = glue.paired_comparison(*runs)
    except TLError as exc:
        st.info(f"{exc.message} {exc.hint}".strip(), icon=":material/info:")
        return
    (st.success if comparison.clear else st.info)(glue.literal(comparison.sentence()),
                                                  icon=":material/balance:")
    st.markdown("\n".join(
        f"- **{name}** {glue.literal(labels[run.id])}: test accuracy {format_percent(interval.value)} "
        f"(95 % interval {format_percent(interval.low)} to {format_percent(interval.high)}, bootstrap)"
        for name, run, interval in zip("AB", runs, comparison.accuracy, strict=True)))
    st.dataframe(_per_class_table(comparison), hide_index=True, key="compare.paired.classes",
                 column_config={name: st.column_config.NumberColumn(format="%+.3f" if "-" in name else "%.3f")
                                for name in SCORE_COLUMNS})
    _disagreements(comparison, runs[0])


def _per_class_table(comparison: PairedComparison) -> pd.DataFrame:
    """Each score for A and B with B's change beside it: recall can rise as precision falls."""
    return pd.DataFrame([{
        "class": delta.name,
        "precision A": delta.precision[0], "precision B": delta.precision[1],
        "precision B - A": delta.precision_delta,
        "recall A": delta.recall[0], "recall B": delta.recall[1], "recall B - A": delta.recall_delta,
        "F1 A": delta.f1[0], "F1 B": delta.f1[1], "F1 B - A": delta.f1_delta,
    } for delta in comparison.per_class], columns=["class", *SCORE_COLUMNS])


def _disagreements(comparison: PairedComparison, first: RunRecord) -> None:
    """Thumbnails of the disagreements whose image is a file (folder datasets), a table for the rest."""
    count = len(comparison.disagreements)
    with st.expander(f"{count} test image(s) the two runs answer differently"):
        if not count:
            st.caption("The two runs give the same answer on every test image.")
            return
        files = image_files(first, (d.id for d in comparison.disagreements))
        pictured = _gallery([d for d in comparison.disagreements if d.id in files], files)
        rest = [d for d in comparison.disagreements if d.id not in pictured]
        if rest:
            _table(rest, count - len(rest))


def _gallery(disagreements: list[Disagreement], files: dict[str, Path]) -> set[str]:
    """Up to :data:`SHOWN_THUMBNAILS` thumbnails; returns the ids drawn."""
    drawn = [(d, picture) for d in disagreements[:SHOWN_THUMBNAILS]
             if (picture := _thumbnail(str(files[d.id]), *_stamp(files[d.id]))) is not None]
    if not drawn:
        return set()
    st.image([picture for _, picture in drawn], width=THUMBNAIL_WIDTH,
             caption=[visible_label(f"true {d.true} · A {d.answer_a} · B {d.answer_b}") for d, _ in drawn])
    if len(disagreements) > len(drawn):
        st.caption(f"Showing {len(drawn)} of {len(disagreements)} with an image file.")
    return {d.id for d, _ in drawn}


def _table(rows: list[Disagreement], pictured: int) -> None:
    """The disagreements not drawn above (all of them for builtin and TFDS data), by name."""
    if pictured:
        st.caption("The others, by name:")
    st.dataframe(pd.DataFrame([{"image": d.id, "true class": d.true, "A answers": d.answer_a,
                                "B answers": d.answer_b} for d in rows[:SHOWN_DISAGREEMENTS]]),
                 hide_index=True, key="compare.paired.disagreements")
    if len(rows) > SHOWN_DISAGREEMENTS:
        st.caption(f"The first {SHOWN_DISAGREEMENTS} of {len(rows)} are listed.")


def _stamp(path: Path) -> tuple[int, int]:
    """The file's change time and size, so an edited image gets a new thumbnail."""
    try:
        info = path.stat()
    except OSError:
        return 0, -1
    return info.st_mtime_ns, info.st_size


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail(path: str, mtime_ns: int, size: int) -> bytes | None:
    """A small JPEG of a dataset image, made once per file version (a page rerun decodes nothing)."""
    del mtime_ns, size  # part of the key only
    return thumbnail(path)
