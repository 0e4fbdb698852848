"""The Compare page's export panel: package a run for phones, edge devices or servers."""

from __future__ import annotations

import streamlit as st

from tlcore.deploy.export import EXPORT_FORMATS, export_metadata, export_run, ready_export
from tlcore.deploy.export_check import ExportCheck
from tlcore.records import RunRecord
from ui import glue

AGREEMENT_SHOWN_AS_FINE = 0.98
"""Below this share of test images with the studio's top class, the check is shown as a warning."""


@st.fragment
def export_section(runs: list[RunRecord], labels: dict[str, str]) -> None:
    """A fragment, so choosing and converting reruns this panel only, not the charts above."""
    with st.expander("Export for phones, edge devices and servers", icon=":material/ios_share:"):
        st.caption("A zip with the model, `labels.txt` and `metadata.json`. The model takes float32 RGB "
                   "pixels in 0-255 at the run's image size and returns class probabilities; "
                   "it normalises its input itself.")
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
                action.empty()  # the download takes the button's place
        if built is not None:
            describe_check(export_metadata(built) or {})
            st.download_button(f"Download {built.name} ({built.stat().st_size / 2**20:.1f} MB)",
                               built.read_bytes, built.name, "application/zip", key="compare.export_download",
                               on_click="ignore", icon=":material/download:")


def describe_check(metadata: dict) -> None:
    """How the exported file did on the test images, so nobody deploys a conversion untried."""
    if "check" in metadata:
        check = ExportCheck(**metadata["check"])
        show = st.success if check.agreement >= AGREEMENT_SHOWN_AS_FINE else st.warning
        show(check.describe(), icon=":material/fact_check:")
    elif "check_skipped" in metadata:
        st.caption(f"Not checked on test images: {metadata['check_skipped']}")
