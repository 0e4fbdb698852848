"""Compare & Classify: runs with results side by side, and their answers on uploaded images.

Finished runs and stopped runs that saved results are offered (``ui.compare_picker``); the
uploads and their answers are ``ui.classify_panel``, the export panel ``ui.exports``.
"""

import pandas as pd
import streamlit as st

from tlcore.records import RunRecord
from tlcore.report.evaluate import EvalReport
from tlcore.report.summaries import (
    MISSING,
    accuracy_gain,
    comparison_rows,
    format_percent,
    headline_accuracy,
    rows_to_csv,
)
from ui import classify_panel, compare_picker, exports, glue, paired_panel, widgets

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


def mistakes_section(runs: list[RunRecord], reports: dict[str, EvalReport]) -> None:
    """The most confident mistakes of each run, of how many it made in all."""
    st.header("Most confident mistakes")
    for run in runs:
        report = reports.get(run.id)
        mistakes = report.mistakes if report else []
        artifacts = store.artifacts(run.id)
        shown = [(path, m) for path, m in ((artifacts.mistake_thumbnail(rank), m)
                                           for rank, m in enumerate(mistakes)) if path.exists()]
        total = mistakes_total(report) if report else 0
        title = f"{labels[run.id]} — {len(shown)} of {total} mistake{'s' if total != 1 else ''} shown"
        with st.expander(title, expanded=len(runs) == 1):
            if not shown:
                st.caption("No mistakes on the test split." if not total else "No images were saved.")
            else:
                st.image([str(path) for path, _ in shown], width=96,
                         caption=[f"{m.true} → {m.predicted} ({m.confidence:.0%})" for _, m in shown])


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
    st.plotly_chart(glue.per_class_f1_chart([run for run in runs if run.id in reports], labels),
                    key="compare.f1")
    paired_panel.paired_section(runs, labels)
    mistakes_section(runs, reports)
else:
    st.caption("Pick one or more runs above to see their curves, metrics and mistakes.")
classify_panel.classify_section(runs, labels)
