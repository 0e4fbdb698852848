"""The Compare page's export panel: package a run for phones, edge devices or servers, and see
every format already built for it side by side (size, accuracy, agreement with the studio)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tlcore.deploy.export import (
    EXPORT_FORMATS,
    BuiltExport,
    built_exports,
    export_metadata,
    export_run,
    ready_export,
)
from tlcore.deploy.export_check import ExportCheck
from tlcore.records import RunRecord
from tlcore.report.summaries import MISSING, format_percent
from tlcore.runs.store import RunStore
from ui import glue

AGREEMENT_SHOWN_AS_FINE = 0.98
"""Below this share of test images with the studio's top class, the check is shown as a warning."""


@st.fragment
def export_section(runs: list[RunRecord], labels: dict[str, str]) -> None:
    """A fragment, so choosing and converting reruns this panel only, not the charts above."""
    with st.expander("Export for phones, edge devices and servers", icon=":material/ios_share:"):
        st.caption("A zip with the model, `labels.txt` and `metadata.json`. The model takes RGB pixels "
                   "in 0-255 at the run's image size (float32; uint8 for the full-integer file) and "
                   "returns class probabilities; it normalises its input itself.")
        run_col, format_col = st.columns(2)
        run_id = run_col.selectbox("Run", [run.id for run in runs], format_func=labels.get,
                                   key="compare.export_run")
        format_name = format_col.selectbox("Format", list(EXPORT_FORMATS),
                                           format_func=lambda name: EXPORT_FORMATS[name].label,
                                           key="compare.export_format")
        st.caption(EXPORT_FORMATS[format_name].purpose)
        store = glue.store()
        built = glue.attempt(ready_export, run_id, format_name, store, doing="looking for the export")
        action = st.empty()
        if built is None and action.button("Build the export", key="compare.export", icon=":material/build:"):
            converting = st.spinner("Converting the model: 10-30 s on two cores…")
            with converting, glue.friendly(f"exporting run {run_id}"):
                built = export_run(run_id, format_name, store)
        result = st.container()  # filled last: the button below may build this format too
        if formats_table(run_id, store) and built is None:
            built = glue.attempt(ready_export, run_id, format_name, store, doing="looking for the export")
        if built is not None:
            action.empty()  # the download takes the button's place
            with result:
                describe_check(export_metadata(built) or {})
                st.download_button(f"Download {built.name} ({built.stat().st_size / 2**20:.1f} MB)",
                                   built.read_bytes, built.name, "application/zip",
                                   key="compare.export_download", on_click="ignore",
                                   icon=":material/download:")


def describe_check(metadata: dict) -> None:
    """How the exported file did on the test images, so nobody deploys a conversion untried."""
    if "check" in metadata:
        check = ExportCheck(**metadata["check"])
        show = st.success if check.agreement >= AGREEMENT_SHOWN_AS_FINE else st.warning
        show(check.describe(), icon=":material/fact_check:")
    elif "check_skipped" in metadata:
        st.caption(f"Not checked on test images: {metadata['check_skipped']}")


def formats_table(run_id: str, store: RunStore) -> bool:
    """Every format built for the run, side by side, and a button that builds the others.

    Returns:
        Whether the button was pressed (so formats were built in this run of the page).
    """
    built = glue.attempt(built_exports, run_id, store, doing="listing the run's exports") or []
    missing = [name for name in EXPORT_FORMATS if name not in {export.format_name for export in built}]
    label = f"Build the other {len(missing)} format{'s' if len(missing) > 1 else ''} to compare them"
    slot = st.empty()
    pressed = bool(missing) and slot.button(label, key="compare.export_all", icon=":material/table_view:")
    if pressed:
        with st.spinner(f"Converting the model to {len(missing)} formats: 10-30 s each on two cores…"):
            for name in missing:
                with glue.friendly(f"exporting run {run_id} as {name}"):
                    export_run(run_id, name, store)
        slot.empty()  # a format that failed says why above; the next visit offers it again
        built = glue.attempt(built_exports, run_id, store, doing="listing the run's exports") or []
    if built:
        st.markdown("**Exports of this run**")
        st.dataframe(pd.DataFrame([table_row(export) for export in built]), hide_index=True)
        st.caption("Accuracy on the same test images as the studio's model; agreement: the share of "
                   "them on which the file's top class is the studio model's. Quantised files trade "
                   "some of it for size.")
    return pressed


def table_row(export: BuiltExport) -> dict[str, str]:
    """One format as people read it: sizes in KB or MB, shares as percentages, "—" when unchecked."""
    check = export.check
    return {
        "Format": export.label,
        "Model": _size(export.model_bytes),
        "Zip": _size(export.zip_bytes),
        "Accuracy": format_percent(check.exported_accuracy if check else None),
        "Studio's model": format_percent(check.studio_accuracy if check else None),
        "Agreement": format_percent(check.agreement if check else None),
    }


def _size(size: int | None) -> str:
    if size is None:
        return MISSING
    return f"{size / 2**10:.0f} KB" if size < 2**20 else f"{size / 2**20:.1f} MB"
