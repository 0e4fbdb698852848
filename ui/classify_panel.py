"""The Compare page's "Classify your images": uploads, and every chosen run's answer for each.

A fragment, so an upload or a setting reruns this section only. It is drawn even while no run is
chosen, so the uploads survive someone clearing the selection to pick other runs.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from tlcore.deploy.serving import Answer
from tlcore.images import MAX_UPLOAD_BYTES, check_upload_size, load_image
from tlcore.records import RunRecord
from tlcore.report.evaluate import DEFAULT_TOP_K
from tlcore.report.plots import predictions_figure
from ui import glue


@st.fragment
def classify_section(runs: list[RunRecord], labels: dict[str, str]) -> None:
    st.header("Classify your images")
    uploads = st.file_uploader("Images (JPEG, PNG or WebP)", type=["jpg", "jpeg", "png", "webp"],
                               accept_multiple_files=True, max_upload_size=MAX_UPLOAD_BYTES // 2**20,
                               key="compare.images")
    if not runs:
        st.caption("Pick a run above to classify these images.")
        return
    # The slider offers only what every chosen model can answer; predict refuses the rest.
    classes = min((run.summary.num_classes for run in runs if run.summary and run.summary.num_classes),
                  default=DEFAULT_TOP_K)
    top_col, sure_col = st.columns(2)
    top_k = (top_col.slider("Top-k", 1, min(10, classes), min(DEFAULT_TOP_K, classes), key="compare.top_k")
             if classes > 1 else 1)
    percent = sure_col.slider("Answer “not sure” below this confidence", 0, 100, 0, step=5, format="%d%%",
                              key="compare.threshold",
                              help="When no class is at least this likely, the answer is “not sure” "
                                   "instead of the most likely class. 0% always names a class.")
    for upload in uploads or []:
        st.divider()
        classify_upload(upload, runs, labels, top_k, percent / 100 or None)


def answer_line(label: str, answer: Answer) -> str:
    """One run's answer under the chart: the class, or "not sure" with its best guess."""
    best = answer.predictions[0]
    if answer.sure:
        return f"{label}: **{best.label}** ({best.probability:.0%})"
    return f"{label}: **not sure** (best guess {best.label}, {best.probability:.0%})"


def classify_upload(upload: UploadedFile, runs: list[RunRecord], labels: dict[str, str], top_k: int,
                    threshold: float | None) -> None:
    """One uploaded image and every run's answer, or why it could not be read."""
    try:
        check_upload_size(upload.size)
        pixels = load_image(upload.getvalue())
    except Exception as exc:  # noqa: BLE001 - one bad image must not hide the others
        st.markdown(f"**{glue.literal(upload.name)}**")
        glue.show_error(exc, f"reading {upload.name}")
        return
    image_col, chart_col = st.columns([1, 3])
    image_col.image(pixels, caption=upload.name, width="stretch")
    answers = {}
    for run in runs:
        with glue.friendly(f"classifying with run {run.id}"):
            answers[labels[run.id]] = glue.loaded_run(run.id).classify([pixels], top_k, threshold)[0]
    if answers:
        figure = predictions_figure({label: a.predictions for label, a in answers.items()}, threshold)
        chart_col.plotly_chart(figure, key=f"compare.pred.{upload.file_id}")
        chart_col.caption("  \n".join(answer_line(label, answer) for label, answer in answers.items()))
