"""Compare & Classify: runs with results side by side, and their answers on uploaded images.

Finished runs and stopped runs that saved results are offered (``ui.compare_picker``); the
uploads and their answers are ``ui.classify_panel`` (zips and many images: ``ui.batch_panel``),
the export panel ``ui.exports``. The mistakes gallery shows the heatmaps the worker saved beside
the thumbnails on a toggle, and the per-class chart the score picked.
"""

import pandas as pd
import streamlit as st

from tlcore.records import RunArtifacts, RunRecord
from tlcore.report.evaluate import EvalReport, Mistake
from tlcore.report.explain import GRAD_CAM, SALIENCY
from tlcore.report.plots import ALL_PER_CLASS
from tlcore.report.summaries import (
    MISSING,
    accuracy_gain,
    comparison_rows,
    format_percent,
    headline_accuracy,
    rows_to_csv,
)
from ui import audit_panel, classify_panel, compare_picker, exports, glue, paired_panel, widgets

# How the mistakes' heatmaps are named, by the kind the worker saved.
HEATMAP_KINDS = {GRAD_CAM: "Grad-CAM", SALIENCY: "gradient saliency (TF Hub: no spatial map)"}
PER_CLASS_CHOICES = {"precision": "precision", "recall": "recall", "f1": "F1", ALL_PER_CLASS: "all three"}

glue.require_frame(__file__)

store = glue.store()
st.title("Compare & Classify")
comparable = glue.attempt(compare_picker.comparable_runs, store, doing="listing runs") or []
pending = glue.attempt(compare_picker.not_comparable_yet, store, comparable, doing="reading runs") or []
if not comparable:
    st.info("No finished runs yet. Train some first — the classic experiment on the Home page "
            "gives three runs worth comparing.")
    st.page_link(widgets.TRAIN_PAGE, label="Go to Train", icon=":material/monitoring:")
    compare_picker.sent_runs_notice(store, pending)
    st.stop()

runs = compare_picker.pick_runs(comparable)
compare_picker.sent_runs_notice(store, pending)
labels = {run.id: compare_picker.choice_label(run, short=True) for run in runs}


def metrics_section(runs: list[RunRecord]) -> None:
    """The table (accuracies as everywhere: ``96.7%``), the headline cards and the downloads."""
    rows = comparison_rows(runs)
    table = pd.DataFrame(rows).assign(run=[compare_picker.choice_label(run) for run in runs])
    percent_columns = ["test accuracy", "best val accuracy"]
    st.dataframe(widgets.percent_table(table, percent_columns), hide_index=True, placeholder=MISSING,
                 column_config={
        "macro F1": st.column_config.NumberColumn(format="%.3f"),
        "train time (s)": st.column_config.NumberColumn(format="%.1f")})
    baseline = headline_accuracy(runs[0])
    for col, run in zip(st.columns(min(len(runs), 4)), runs[:4], strict=True):
        accuracy = headline_accuracy(run)
        col.metric(labels[run.id], format_percent(accuracy), help="Accuracy on the held-out test split",
                   delta=accuracy_gain(accuracy, baseline, runs[0].id) if run is not runs[0] else None,
                   delta_color="off" if round(accuracy - baseline, 3) == 0 else "normal")
    downloads = st.columns(1 + len(runs))
    downloads[0].download_button("Table as CSV", rows_to_csv(rows), "comparison.csv", "text/csv",
                                 key="compare.csv", on_click="ignore", icon=":material/download:")
    for col, run in zip(downloads[1:], runs, strict=True):
        col.download_button(f"Model {run.id} (.keras)", store.model_path(run.id).read_bytes,
                            f"{run.id}.keras", "application/octet-stream", key=f"compare.model.{run.id}",
                            on_click="ignore", icon=":material/download:")


def mistakes_total(report: EvalReport) -> int:
    """Test images the run got wrong: the confusion matrix off its diagonal."""
    return sum(map(sum, report.confusion)) - sum(row[i] for i, row in enumerate(report.confusion))


def heatmaps_caption(artifacts: RunArtifacts) -> str:
    """What the overlays of a run are: Grad-CAM, or saliency for a TF Hub vector model."""
    try:
        kind = artifacts.mistake_heatmap_kind.read_text().strip()
    except OSError:
        kind = GRAD_CAM
    return (f"Heatmaps of the predicted class ({HEATMAP_KINDS.get(kind, kind)}): red is where the "
            "evidence for it was.")


def mistake_gallery(artifacts: RunArtifacts, shown: list[tuple[int, Mistake]], heatmaps: bool) -> None:
    """The thumbnails, or with ``heatmaps`` their overlays where the run saved them."""
    pictures = [artifacts.mistake_thumbnail(rank) for rank, _ in shown]
    if heatmaps:
        overlays = [artifacts.mistake_heatmap(rank) for rank, _ in shown]
        if all(path.exists() for path in overlays):
            pictures = overlays
            st.caption(heatmaps_caption(artifacts))
        else:
            st.caption("This run has no heatmaps: it was trained before they were saved, or its model "
                       "could not be explained (its notes on the Train page say why). The images alone:")
    st.image([str(path) for path in pictures], width=96, output_format="PNG",  # JPEG blurs 48 px images
             caption=[f"{m.true} → {m.predicted} ({m.confidence:.0%})" for _, m in shown])


def mistakes_section(runs: list[RunRecord], reports: dict[str, EvalReport]) -> None:
    """The most confident mistakes of each run, of how many it made in all, and on a toggle
    the heatmap of the class each was taken for."""
    st.header("Most confident mistakes")
    heatmaps = st.toggle("Show heatmaps", key="compare.mistakes.heatmaps",
                         help="Colour where in each image the evidence for the predicted class was.")
    for run in runs:
        report = reports.get(run.id)
        mistakes = report.mistakes if report else []
        artifacts = store.artifacts(run.id)
        shown = [(rank, m) for rank, m in enumerate(mistakes) if artifacts.mistake_thumbnail(rank).exists()]
        total = mistakes_total(report) if report else 0
        title = f"{labels[run.id]} — {len(shown)} of {total} mistake{'s' if total != 1 else ''} shown"
        with st.expander(title, expanded=len(runs) == 1):
            if not shown:
                st.caption("No mistakes on the test split." if not total else "No images were saved.")
            else:
                mistake_gallery(artifacts, shown, heatmaps)


def per_class_section(runs: list[RunRecord]) -> None:
    """Per-class precision, recall or F1 (or the three), from each run's one report."""
    metric = st.segmented_control("Per-class score", list(PER_CLASS_CHOICES), default="f1", required=True,
                                  format_func=PER_CLASS_CHOICES.__getitem__, key="compare.per_class_metric",
                                  help="Precision: of the images a run called this class, the share "
                                       "that were. Recall: of this class's images, the share it found.")
    st.plotly_chart(glue.per_class_f1_chart(runs, labels, metric or "f1"), key="compare.f1")


if runs:
    st.header("Learning curves")
    left, right = st.columns(2)
    for col, metric in ((left, "val_accuracy"), (right, "val_loss")):
        col.plotly_chart(glue.comparison_chart(runs, labels, metric), key=f"compare.{metric}")
    st.header("Test metrics")
    metrics_section(runs)
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
    per_class_section([run for run in runs if run.id in reports])
    paired_panel.paired_section(runs, labels)
    audit_panel.audit_section(store, runs, labels)
    mistakes_section(runs, reports)
else:
    st.caption("Pick one or more runs above to see their curves, metrics and mistakes.")
classify_panel.classify_section(runs, labels)
