"""Plotly figures built from store records by pure functions, so they are unit-testable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tlcore.records import EpochRecord
from tlcore.report.evaluate import EvalReport, Prediction

TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#ff7f0e"
METRIC_TITLES = {
    "val_accuracy": "Validation accuracy", "accuracy": "Training accuracy",
    "val_loss": "Validation loss", "loss": "Training loss",
}


def history_frame(records: Sequence[EpochRecord]) -> pd.DataFrame:
    """One row per epoch, columns as in :class:`EpochRecord`."""
    columns = list(EpochRecord.__dataclass_fields__)
    return pd.DataFrame([r.to_dict() for r in records], columns=columns)


def stage_boundaries(frame: pd.DataFrame) -> list[float]:
    """x positions between the last epoch of a stage and the first of the next."""
    changes = frame["stage"].ne(frame["stage"].shift()) & frame.index.to_series().gt(0)
    return [float(e) - 0.5 for e in frame.loc[changes, "epoch"]]


def history_figure(records: Sequence[EpochRecord], total_epochs: int | None = None) -> go.Figure:
    """Loss and accuracy per epoch, train vs validation, with the fine-tune boundary marked."""
    frame = history_frame(records)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    for col, (train_key, val_key) in enumerate((("loss", "val_loss"), ("accuracy", "val_accuracy")), 1):
        for key, name, color in ((train_key, "train", TRAIN_COLOR), (val_key, "validation", VAL_COLOR)):
            fig.add_trace(
                go.Scatter(x=frame["epoch"], y=frame[key], mode="lines+markers", name=name,
                           line={"color": color}, legendgroup=name, showlegend=col == 1),
                row=1, col=col,
            )
    for x in stage_boundaries(frame):
        fig.add_vline(x=x, line_dash="dash", line_color="gray")
        fig.add_annotation(x=x, y=1.0, yref="paper", text="fine-tune starts", showarrow=False,
                           xanchor="left", font={"color": "gray"})
    if total_epochs:
        fig.update_xaxes(range=[0.5, total_epochs + 0.5])
    fig.update_xaxes(title_text="epoch", dtick=1 if (total_epochs or len(frame)) <= 20 else None)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=360, margin={"t": 40, "b": 40, "l": 40, "r": 10},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def comparison_figure(
    histories: Mapping[str, Sequence[EpochRecord]], metric: str = "val_accuracy"
) -> go.Figure:
    """One line per run for ``metric``, so strategies can be compared epoch by epoch."""
    fig = go.Figure()
    for label, records in histories.items():
        frame = history_frame(records)
        fig.add_trace(go.Scatter(x=frame["epoch"], y=frame[metric], mode="lines+markers", name=label))
    fig.update_layout(title=METRIC_TITLES.get(metric, metric), xaxis_title="epoch",
                      yaxis_title=metric.removeprefix("val_"),
                      height=380, margin={"t": 50, "b": 40, "l": 40, "r": 10},
                      legend={"orientation": "h", "y": -0.25})
    if "accuracy" in metric:
        fig.update_yaxes(range=[0, 1.02])
    return fig


def confusion_figure(report: EvalReport, title: str = "") -> go.Figure:
    """Confusion matrix as a heatmap, rows normalised so colours compare across classes."""
    matrix = pd.DataFrame(report.confusion, index=report.class_names, columns=report.class_names)
    totals = matrix.sum(axis=1).replace(0, 1)
    normalised = matrix.div(totals, axis=0)
    fig = go.Figure(go.Heatmap(
        z=normalised.values, x=report.class_names, y=report.class_names, colorscale="Blues",
        zmin=0, zmax=1, text=matrix.values, texttemplate="%{text}",
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text} images<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", height=380,
                      yaxis={"autorange": "reversed"}, margin={"t": 50, "b": 40, "l": 40, "r": 10})
    return fig


def per_class_f1_figure(reports: Mapping[str, EvalReport]) -> go.Figure:
    """Grouped bars: F1 of each class for each run."""
    fig = go.Figure()
    for label, report in reports.items():
        fig.add_trace(go.Bar(x=[c.name for c in report.per_class], y=[c.f1 for c in report.per_class],
                             name=label))
    fig.update_layout(barmode="group", yaxis={"range": [0, 1], "title": "F1"}, height=360,
                      title="F1 per class", margin={"t": 50, "b": 40, "l": 40, "r": 10},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def class_counts_figure(counts: Mapping[str, Mapping[str, int]]) -> go.Figure:
    """Images per class, stacked by split, to spot imbalance at a glance."""
    fig = go.Figure()
    for split, per_class in counts.items():
        fig.add_trace(go.Bar(x=list(per_class), y=list(per_class.values()), name=split))
    fig.update_layout(barmode="stack", yaxis_title="images", height=320,
                      margin={"t": 20, "b": 40, "l": 40, "r": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def predictions_figure(predictions: Mapping[str, Sequence[Prediction]]) -> go.Figure:
    """Top-k probabilities of one image, one bar group per run."""
    fig = go.Figure()
    for label, preds in predictions.items():
        fig.add_trace(go.Bar(y=[p.label for p in preds][::-1], x=[p.probability for p in preds][::-1],
                             orientation="h", name=label,
                             text=[f"{p.probability:.0%}" for p in preds][::-1], textposition="auto"))
    longest = max((len(p) for p in predictions.values()), default=1)
    fig.update_layout(barmode="group", xaxis={"range": [0, 1], "tickformat": ".0%"},
                      height=120 + 40 * longest * max(1, len(predictions)) // 2,
                      margin={"t": 10, "b": 30, "l": 10, "r": 10}, legend={"orientation": "h", "y": -0.3})
    return fig
