"""Compare & Classify: finished runs side by side, and their predictions on uploaded images."""

import pandas as pd
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from tlcore.images import MAX_UPLOAD_BYTES, check_upload_size, load_image
from tlcore.records import RunRecord, RunStatus
from tlcore.report.evaluate import DEFAULT_TOP_K
from tlcore.report.plots import predictions_figure
from tlcore.report.summaries import accuracy_gain, comparison_rows, headline_accuracy, rows_to_csv, run_label
from ui import exports, glue, widgets

glue.require_frame(__file__)

store = glue.store()
st.title("Compare & Classify")
finished = glue.attempt(store.list_runs, statuses={RunStatus.FINISHED}, doing="listing runs") or []
if not finished:
    st.info("No finished runs yet. Train some first — the classic experiment on the Home page "
            "gives three runs worth comparing.")
    st.page_link(widgets.TRAIN_PAGE, label="Go to Train", icon=":material/monitoring:")
    st.stop()

by_id = {run.id: run for run in finished}
requested = [run_id for run_id in st.query_params.get(glue.COMPARE_PARAM, "").split(",") if run_id in by_id]
chosen = st.multiselect("Finished runs (pick two or more to compare)", list(by_id),
                        default=requested or list(by_id)[:2], format_func=lambda i: run_label(by_id[i]),
                        key="compare.runs")
runs = [by_id[i] for i in chosen]
if not runs:
    st.stop()
labels = {run.id: run_label(run, short=True) for run in runs}

st.header("Learning curves")
left, right = st.columns(2)
for col, metric in ((left, "val_accuracy"), (right, "val_loss")):
    col.plotly_chart(glue.comparison_chart(runs, labels, metric), key=f"compare.{metric}")

st.header("Test metrics")
rows = comparison_rows(runs)
table = pd.DataFrame(rows)
accuracies = ["test accuracy", "best val accuracy"]
table[accuracies] = table[accuracies].astype(float) * 100  # shown with one decimal everywhere
percent = st.column_config.NumberColumn(format="%.1f%%")
st.dataframe(table, hide_index=True, column_config={
    "test accuracy": percent, "best val accuracy": percent,
    "macro F1": st.column_config.NumberColumn(format="%.3f"),
    "train time (s)": st.column_config.NumberColumn(format="%.1f")})
baseline = headline_accuracy(runs[0])
for col, run in zip(st.columns(min(len(runs), 4)), runs[:4], strict=True):
    accuracy = headline_accuracy(run)
    col.metric(labels[run.id], f"{accuracy:.1%}", help="Accuracy on the held-out test split",
               delta=accuracy_gain(accuracy, baseline, runs[0].id) if run is not runs[0] else None,
               delta_color="off" if round(accuracy - baseline, 3) == 0 else "normal")
downloads = st.columns(1 + len(runs))
downloads[0].download_button("Table as CSV", rows_to_csv(rows), "comparison.csv", "text/csv",
                             key="compare.csv", on_click="ignore", icon=":material/download:")
for col, run in zip(downloads[1:], runs, strict=True):
    col.download_button(f"Model {run.id} (.keras)", store.model_path(run.id).read_bytes,
                        f"{run.id}.keras", "application/octet-stream", key=f"compare.model.{run.id}",
                        on_click="ignore", icon=":material/download:")
exports.export_section(runs, labels)

reports = {}
for run in runs:
    with glue.friendly(f"reading the report of run {run.id}"):
        reports[run.id] = glue.finished_report(run)
st.header("Confusion matrices")
for start in range(0, len(runs), 3):
    for col, run in zip(st.columns(3), runs[start:start + 3], strict=False):  # the last row may be short
        if run.id in reports:
            col.plotly_chart(glue.confusion_chart(run, labels[run.id]), key=f"compare.confusion.{run.id}")
st.plotly_chart(glue.per_class_f1_chart([run for run in runs if run.id in reports], labels), key="compare.f1")

st.header("Most confident mistakes")
for run in runs:
    mistakes = reports[run.id].mistakes if run.id in reports else []
    artifacts = store.artifacts(run.id)
    thumbnails = [(artifacts.mistake_thumbnail(rank), m) for rank, m in enumerate(mistakes)]
    shown = [(path, m) for path, m in thumbnails if path.exists()]
    with st.expander(f"{labels[run.id]} — {len(mistakes)} mistake(s) shown", expanded=len(runs) == 1):
        if not shown:
            st.caption("No mistakes on the test split." if not mistakes else "No images were saved.")
        else:
            st.image([str(path) for path, _ in shown], width=96,
                     caption=[f"{m.true} → {m.predicted} ({m.confidence:.0%})" for _, m in shown])



@st.fragment
def classify_section(runs: list[RunRecord], labels: dict[str, str]) -> None:
    """Uploads and their predictions: a fragment, so an upload reruns this section only."""
    st.header("Classify your images")
    uploads = st.file_uploader("Images (JPEG, PNG or WebP)", type=["jpg", "jpeg", "png", "webp"],
                               accept_multiple_files=True, max_upload_size=MAX_UPLOAD_BYTES // 2**20,
                               key="compare.images")
    # The slider offers only what every chosen model can answer; predict refuses the rest.
    classes = min((run.summary.num_classes for run in runs if run.summary and run.summary.num_classes),
                  default=DEFAULT_TOP_K)
    top_k = (st.slider("Top-k", 1, min(10, classes), min(DEFAULT_TOP_K, classes), key="compare.top_k")
             if classes > 1 else 1)
    for upload in uploads or []:
        st.divider()
        classify_upload(upload, runs, labels, top_k)


def classify_upload(upload: UploadedFile, runs: list[RunRecord], labels: dict[str, str],
                    top_k: int) -> None:
    """One uploaded image and every run's predictions, or why it could not be read."""
    try:
        check_upload_size(upload.size)
        pixels = load_image(upload.getvalue())
    except Exception as exc:  # noqa: BLE001 - one bad image must not hide the others
        st.markdown(f"**{upload.name}**")
        glue.show_error(exc, f"reading {upload.name}")
        return
    image_col, chart_col = st.columns([1, 3])
    image_col.image(pixels, caption=upload.name, width="stretch")
    predictions = {}
    for run in runs:
        with glue.friendly(f"classifying with run {run.id}"):
            predictions[labels[run.id]] = glue.loaded_run(run.id).predict([pixels], top_k)[0]
    if predictions:
        chart_col.plotly_chart(predictions_figure(predictions), key=f"compare.pred.{upload.file_id}")
        chart_col.caption("  \n".join(f"{label}: **{p[0].label}** ({p[0].probability:.0%})"
                                      for label, p in predictions.items()))


classify_section(runs, labels)
