"""Compare's "Can we trust the test score?": each run's stored data audit, rendered.

The audit reads a dataset's features, which the server must never do, so this panel only
reads what ``python -m tlcore audit RUN`` stored beside the run, and says how to get it when
a run has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from tlcore.data.labels import visible_label
from tlcore.errors import TLError
from tlcore.records import RunRecord
from tlcore.report.audit import DataAudit
from tlcore.report.audit_plots import BOXED, PICKED, embedding_map_spec, picture_uri
from tlcore.runs.auditing import (
    AUDIT_FILE,
    THUMBNAIL_FOLDER,
    audit_folder,
    audit_problem,
    map_thumbnail_name,
    map_thumbnail_path,
    stored_audit,
    thumbnail_path,
)
from tlcore.runs.store import RunStore
from ui import glue, task_panel

SHOWN_PAIRS = 12
SHOWN_ISSUES = 24
THUMBNAIL_WIDTH = 96
SHOWN_PICKED = 6


def audit_section(store: RunStore, runs: list[RunRecord], labels: dict[str, str]) -> None:
    """For each run: the audit's warnings, copies across splits, likely label errors and the map."""
    st.header("Can we trust the test score?")
    if not runs:
        st.caption("Pick runs above to see their data audits.")
        return
    for run in runs:
        with (st.expander(f"{labels[run.id]} — data audit", expanded=len(runs) == 1),
              glue.friendly(f"showing the audit of run {run.id}")):
            _run_audit(store, run)


def _progress(progress: dict) -> tuple[float, str]:
    return float(progress.get("share", 0.0)), str(progress.get("text", "Auditing…"))


def _run_audit(store: RunStore, run: RunRecord) -> None:
    problem = audit_problem(run)
    if problem:
        st.caption(f"{glue.literal(problem)} Audit a frozen or fine-tuned run of the same data.")
        return
    try:
        audit = stored_audit(store, run.id)
    except TLError as exc:
        st.warning(f"{exc.message} {exc.hint}", icon=":material/warning:")
        return
    if audit is None:
        st.info("This run has no data audit yet: copies of test images in training, likely label "
                "errors and a map of the test images. It takes seconds after a frozen run, in the "
                f"background (or `python -m tlcore audit {run.id}` on the server).", icon=":material/search:")
        task_panel.task_section(f"compare.audit.{run.id}", "audit", run.spec, {"run_id": run.id},
                                "Audit this run", lambda result: st.rerun(), _progress)
        return
    for warning in audit.warnings():
        st.warning(warning, icon=":material/warning:")
    if not audit.warnings():
        st.success("No copies across the splits and no likely label errors.", icon=":material/verified:")
    st.caption(f"{audit.criteria()} Audited {', '.join(f'{n:,} {s}' for s, n in audit.sizes.items())} "
               f"images in {audit.seconds:.1f} s.")
    _leak_pairs(store, run.id, audit)
    _label_issues(store, run.id, audit)
    if audit.map_points:
        _embedding_map(store, run.id, audit)


def _embedding_map(store: RunStore, run_id: str, audit: DataAudit) -> None:
    """The map, whose points show their picture on hover; picked points show it larger beside it."""
    chart, picture = st.columns([3, 1])
    spec = embedding_map_spec(audit, _map_pictures(store, run_id, len(audit.map_points)))
    event = chart.vega_lite_chart(spec, key=f"compare.audit.map.{run_id}", on_select="rerun",
                                  selection_mode=(PICKED, BOXED), width="stretch")
    picked = picked_positions(event.selection if event else {}, audit)[:SHOWN_PICKED]
    if not picked:
        picture.caption("Hover a point to see its picture; click points (shift-click for more) or drag "
                        "a box round some to see them larger here.")
    for position in picked:
        point, path = audit.map_points[position], map_thumbnail_path(store, run_id, position)
        text = (f"{point.id}: {audit.class_names[point.label]}, answered "
                f"{audit.class_names[point.predicted]}")
        if path.exists():
            picture.image(str(path), caption=glue.literal(text))
        else:
            picture.caption(glue.literal(text) + " (no picture kept: audit it again)")


def picked_positions(selection: Mapping[str, Any], audit: DataAudit) -> list[int]:
    """Places in ``audit.map_points`` of the clicked points, then of those inside the dragged box.

    A click's selection lists each point's ``position``; a box gives the x and y ranges it covers.
    """
    count = len(audit.map_points)
    clicked = [item.get("position") for item in selection.get(PICKED) or [] if isinstance(item, Mapping)]
    found = [position for position in clicked if isinstance(position, int) and 0 <= position < count]
    box = selection.get(BOXED) or {}
    ranges = [box.get("x"), box.get("y")]
    if all(isinstance(span, Sequence) and len(span) == 2 for span in ranges):
        (x_low, x_high), (y_low, y_high) = (sorted(span) for span in ranges)
        found += [position for position, point in enumerate(audit.map_points)
                  if x_low <= point.x <= x_high and y_low <= point.y <= y_high]
    return list(dict.fromkeys(found))


def _map_pictures(store: RunStore, run_id: str, count: int) -> list[str | None]:
    """The map's hover pictures, read once per stored audit (its file's time is in the cache key)."""
    try:
        stamp = (audit_folder(store, run_id) / AUDIT_FILE).stat().st_mtime_ns
    except OSError:
        return []
    return _pictures(str(audit_folder(store, run_id)), count, stamp)


@st.cache_data(max_entries=8, show_spinner=False)
def _pictures(folder: str, count: int, stamp: int) -> list[str | None]:
    """Small data URIs of the map's thumbnails (per audit folder, count and time: shared data)."""
    thumbnails = Path(folder) / THUMBNAIL_FOLDER
    return [picture_uri(thumbnails / map_thumbnail_name(position)) for position in range(count)]


def _leak_pairs(store: RunStore, run_id: str, audit: DataAudit) -> None:
    total = sum(count.total for count in audit.leak_counts)
    if not audit.leaks:
        return
    st.subheader(f"Copies across splits ({len(audit.leaks[:SHOWN_PAIRS])} of {total} shown)")
    names = audit.class_names
    for pair in audit.leaks[:SHOWN_PAIRS]:
        left, right, words = st.columns([1, 1, 3], vertical_alignment="center")
        _thumbnail(left, thumbnail_path(store, run_id, pair.split, pair.index), f"{pair.split}: {pair.id}")
        _thumbnail(right, thumbnail_path(store, run_id, pair.other_split, pair.other_index),
                   f"{pair.other_split}: {pair.other_id}")
        same = pair.label == pair.other_label
        kind = "Exact copy" if pair.kind == "exact" else "Near-copy"
        words.markdown(
            f"**{kind}**, similarity {pair.similarity:.4f}  \n"
            f"{pair.split} {_shown(pair.id)} ({_shown(names[pair.label])}) · "
            f"{pair.other_split} {_shown(pair.other_id)} ({_shown(names[pair.other_label])})"
            + ("" if same else "  \n:orange[The two copies carry different labels.]"))


def _label_issues(store: RunStore, run_id: str, audit: DataAudit) -> None:
    if not audit.label_issues:
        return
    shown = audit.label_issues[:SHOWN_ISSUES]
    st.subheader(f"Likely label errors ({len(shown)} of {audit.label_issue_count} shown)")
    paths = [thumbnail_path(store, run_id, "train", issue.index) for issue in shown]
    names = audit.class_names
    captions = [visible_label(f"{issue.id}: labelled {names[issue.given]}, looks like "
                              f"{names[issue.suspected]} ({issue.confidence:.0%})") for issue in shown]
    kept = [(str(path), caption) for path, caption in zip(paths, captions, strict=True) if path.exists()]
    if kept:
        st.image([path for path, _ in kept], width=THUMBNAIL_WIDTH,
                 caption=[caption for _, caption in kept])
    st.dataframe([{"image": visible_label(issue.id), "given": visible_label(names[issue.given]),
                   "suspected": visible_label(names[issue.suspected]), "confidence": issue.confidence}
                  for issue in shown], hide_index=True, key=f"compare.audit.issues.{run_id}",
                 column_config={"confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0)})
    if audit.label_issue_count > len(shown):
        st.caption(f"The audit keeps the {len(audit.label_issues)} most likely; "
                   f"`python -m tlcore audit {run_id} --json` prints them.")


def _shown(text: str) -> str:
    """A file or class name in Markdown as it is: invisible characters spelled out, nothing markup."""
    return glue.literal(visible_label(text))


def _thumbnail(column: DeltaGenerator, path: Path, caption: str) -> None:
    """The image with its name under it, or just the name when the thumbnail is missing."""
    if path.exists():
        column.image(str(path), width=THUMBNAIL_WIDTH, caption=visible_label(caption))
    else:
        column.caption(visible_label(caption))
