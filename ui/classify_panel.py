"""The Compare page's "Classify your images": uploads, and every chosen run's answer for each.

A fragment, so an upload or a setting reruns this section only. It is drawn even while no run is
chosen, so the uploads survive someone clearing the selection to pick other runs. A few images
are shown one by one beside each run's answer; on a toggle, each run's heatmap of a class (the
predicted one, or one picked) is drawn over every upload. Zips, and more images than fit that
view, go to the batch view (``ui.batch_panel``): a table, a gallery and a CSV.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from tlcore.data.uploads import MAX_ZIP_UPLOAD_BYTES
from tlcore.deploy.serving import Answer
from tlcore.images import check_upload_size, load_image
from tlcore.records import RunRecord
from tlcore.report.evaluate import DEFAULT_TOP_K
from tlcore.report.explain import GRAD_CAM
from tlcore.report.plots import predictions_figure
from ui import batch_panel, glue

PREDICTED = "predicted class"
"""The "Explain class" choice that explains each run's own answer."""
MAP_KINDS = {GRAD_CAM: "Grad-CAM"}
"""How each heatmap kind is named under an overlay; the other kind is saliency."""
SALIENCY_NAME = "gradient saliency (TF Hub: no spatial map)"
OVERLAYS_PER_ROW = 4
SIDE_BY_SIDE_MAX = 20
"""Most image files shown one by one (a chart each); more go to the batch view."""


@st.fragment
def classify_section(runs: list[RunRecord], labels: dict[str, str]) -> None:
    st.header("Classify your images")
    uploads = st.file_uploader("Images (JPEG, PNG or WebP), or zips of them",
                               type=["jpg", "jpeg", "png", "webp", "zip"], accept_multiple_files=True,
                               max_upload_size=MAX_ZIP_UPLOAD_BYTES // 2**20, key="compare.images",
                               help="Single images are read up to 20 MB each; a zip up to 200 MB, "
                                    "classified a batch at a time.")
    uploads = uploads or []
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
    if as_batch(uploads):
        batch_panel.batch_section(uploads, runs, labels, top_k, percent / 100 or None)
        return
    batch_panel.forget()
    explained = explain_choice(runs)
    for upload in uploads:
        st.divider()
        classify_upload(upload, runs, labels, top_k, percent / 100 or None, explained)


def as_batch(uploads: list[UploadedFile]) -> bool:
    """Whether the uploads go to the batch view: always for a zip or many images, on a toggle
    for a few."""
    if any(batch_panel.is_zip(upload) for upload in uploads) or len(uploads) > SIDE_BY_SIDE_MAX:
        return True
    return len(uploads) > 1 and st.toggle(
        "As a batch: table, gallery and CSV", key="compare.batch",
        help=f"Zips and more than {SIDE_BY_SIDE_MAX} images are always classified as a batch.")


def explain_choice(runs: list[RunRecord]) -> str | None:
    """The toggle and the class to explain: None when off, else :data:`PREDICTED` or a class name.

    The classes offered are the first run's (runs trained on other data may lack some).
    """
    if not st.toggle("Explain (Grad-CAM)", key="compare.explain",
                     help="Colour where in each image the evidence for a class is, red most."):
        return None
    names: list[str] = []
    with glue.friendly(f"reading the classes of run {runs[0].id}"):
        names = glue.loaded_run(runs[0].id).class_names
    return st.selectbox("Explain class", [PREDICTED, *names], key="compare.explain_class")


def answer_line(label: str, answer: Answer) -> str:
    """One run's answer under the chart: the class, or "not sure" with its best guess."""
    best = answer.predictions[0]
    if answer.sure:
        return f"{label}: **{best.label}** ({best.probability:.0%})"
    return f"{label}: **not sure** (best guess {best.label}, {best.probability:.0%})"


def classify_upload(upload: UploadedFile, runs: list[RunRecord], labels: dict[str, str], top_k: int,
                    threshold: float | None, explained: str | None = None) -> None:
    """One uploaded image and every run's answer (and heatmaps), or why it could not be read."""
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
    if explained is not None:
        overlays_row(upload, runs, labels, None if explained == PREDICTED else explained)


def overlays_row(upload: UploadedFile, runs: list[RunRecord], labels: dict[str, str],
                 class_name: str | None) -> None:
    """Each run's heatmap of ``class_name`` (None: its predicted class) over the upload, side by side."""
    for start in range(0, len(runs), OVERLAYS_PER_ROW):
        row = runs[start:start + OVERLAYS_PER_ROW]
        for col, run in zip(st.columns(OVERLAYS_PER_ROW), row, strict=False):  # the last row may be short
            with col, glue.friendly(f"explaining {upload.name} with run {run.id}"):
                if class_name is not None and class_name not in glue.loaded_run(run.id).class_names:
                    st.caption(f"{labels[run.id]} has no class “{class_name}”.")
                    continue
                picture, explanation = glue.explained_overlay(run, upload.getvalue(), class_name)
                kind = MAP_KINDS.get(explanation.kind, SALIENCY_NAME)
                st.image(picture, width="stretch", caption=f"{labels[run.id]}: {explanation.class_name} "
                                                           f"({explanation.probability:.0%}) · {kind}")
