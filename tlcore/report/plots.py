"""Plotly figures built from store records by pure functions, so they are unit-testable."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tlcore.errors import ConfigError
from tlcore.records import EpochRecord
from tlcore.report.evaluate import EvalReport, Prediction

TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#ff7f0e"
METRIC_TITLES = {
    "val_accuracy": "Validation accuracy", "accuracy": "Training accuracy",
    "val_loss": "Validation loss", "loss": "Training loss",
}
RUN_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442")
"""The Okabe-Ito colours, which people with colour-blindness tell apart too. Charts set them per
trace: Streamlit's theme would otherwise draw the first two runs in two shades of blue."""
RUN_DASHES = ("solid", "dash", "dot", "dashdot")
RUN_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")
TITLE_WIDTH = 30
"""Characters per title line that fit a chart a third of the page wide."""


@dataclass(frozen=True)
class RunStyle:
    """How the ``index``-th run of a chart is drawn; the same in every chart of a page."""

    color: str
    dash: str
    symbol: str


def run_style(index: int) -> RunStyle:
    """Colour, dash and marker of a run: neighbours differ in all three, so lines that cross or
    overlap stay apart, in grey print as well."""
    return RunStyle(RUN_COLORS[index % len(RUN_COLORS)], RUN_DASHES[index % len(RUN_DASHES)],
                    RUN_SYMBOLS[index % len(RUN_SYMBOLS)])


def wrap_title(text: str, width: int = TITLE_WIDTH) -> str:
    """``text`` in lines of at most ``width`` characters (Plotly's ``<br>``), broken after a " · "
    where it can: Plotly cuts a title that is wider than its chart."""
    lines: list[str] = []
    for part in text.split(" · "):
        pieces = textwrap.wrap(part, width, break_on_hyphens=False) or [""]
        if lines and len(lines[-1]) + 3 + len(pieces[0]) <= width:
            lines[-1] += " · " + pieces.pop(0)
        lines += pieces
    return "<br>".join(lines)


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
    for index, (label, records) in enumerate(histories.items()):
        frame = history_frame(records)
        style = run_style(index)
        fig.add_trace(go.Scatter(x=frame["epoch"], y=frame[metric], mode="lines+markers", name=label,
                                 line={"color": style.color, "dash": style.dash, "width": 2.5},
                                 marker={"symbol": style.symbol, "size": 8, "color": style.color}))
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
    wrapped = wrap_title(title)
    lines = wrapped.count("<br>") + 1 if title else 0
    fig.update_layout(title={"text": wrapped, "font": {"size": 15}}, xaxis_title="predicted",
                      yaxis_title="true", height=360 + 20 * lines, yaxis={"autorange": "reversed"},
                      margin={"t": 30 + 20 * lines, "b": 40, "l": 40, "r": 10})
    return fig


PER_CLASS_METRICS = {"precision": "Precision", "recall": "Recall", "f1": "F1"}
"""The per-class scores of a report (:class:`~tlcore.report.evaluate.ClassMetrics` fields) and
their names on a chart."""
ALL_PER_CLASS = "all"
"""The per-class chart's choice that draws all three scores, one row each."""


def per_class_f1_figure(reports: Mapping[str, EvalReport], metric: str = "f1") -> go.Figure:
    """Grouped bars, one group per class and one bar per run, of ``metric``: ``"f1"``,
    ``"precision"`` or ``"recall"``, or :data:`ALL_PER_CLASS` for the three in rows that share
    the classes (F1 alone hides whether a class is missed or other classes are taken for it).

    Raises:
        ConfigError: ``metric`` is none of those.
    """
    if metric != ALL_PER_CLASS and metric not in PER_CLASS_METRICS:
        raise ConfigError(f"There is no per-class {metric!r} score.",
                          f"Pick one of {', '.join(PER_CLASS_METRICS)} or {ALL_PER_CLASS!r}.")
    shown = list(PER_CLASS_METRICS) if metric == ALL_PER_CLASS else [metric]
    fig = make_subplots(rows=len(shown), cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for row, name in enumerate(shown, 1):
        for index, (label, report) in enumerate(reports.items()):
            fig.add_trace(go.Bar(x=[c.name for c in report.per_class],
                                 y=[getattr(c, name) for c in report.per_class], name=label,
                                 legendgroup=label, showlegend=row == 1,
                                 marker_color=run_style(index).color), row=row, col=1)
        fig.update_yaxes(range=[0, 1], title_text=PER_CLASS_METRICS[name], row=row, col=1)
    title = "Precision, recall and F1" if metric == ALL_PER_CLASS else PER_CLASS_METRICS[metric]
    single = len(shown) == 1
    fig.update_layout(barmode="group", height=360 if single else 640, title=f"{title} per class",
                      margin={"t": 50, "b": 40, "l": 40, "r": 10},
                      legend={"orientation": "h", "y": -0.25 if single else -0.1})
    return fig


def class_counts_figure(counts: Mapping[str, Mapping[str, int]]) -> go.Figure:
    """Images per class, stacked by split, to spot imbalance at a glance."""
    fig = go.Figure()
    for split, per_class in counts.items():
        fig.add_trace(go.Bar(x=list(per_class), y=list(per_class.values()), name=split))
    fig.update_layout(barmode="stack", yaxis_title="images", height=320,
                      margin={"t": 20, "b": 40, "l": 40, "r": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def predictions_figure(
    predictions: Mapping[str, Sequence[Prediction]], threshold: float | None = None
) -> go.Figure:
    """Top-k probabilities of one image, one bar group per run, with the "not sure" line if set.

    The percentages sit just beyond the end of each bar, at one size: inside a bar of 3 % they
    would shrink until nobody can read them.
    """
    fig = go.Figure()
    for index, (label, preds) in enumerate(predictions.items()):
        fig.add_trace(go.Bar(y=[p.label for p in preds][::-1], x=[p.probability for p in preds][::-1],
                             orientation="h", name=label, marker_color=run_style(index).color,
                             text=[f"{p.probability:.0%}" for p in preds][::-1], textposition="outside",
                             textfont={"size": 12}, constraintext="none", cliponaxis=False))
    if threshold:
        fig.add_vline(x=threshold, line_dash="dot", line_color="gray", annotation_text="not sure below",
                      annotation_position="top", annotation_font_color="gray")
    classes = len({p.label for preds in predictions.values() for p in preds}) or 1
    fig.update_layout(barmode="group", xaxis={"range": [0, 1], "tickformat": ".0%"},
                      height=140 + 18 * classes * max(1, len(predictions)),
                      margin={"t": 30, "b": 30, "l": 10, "r": 50}, legend={"orientation": "h", "y": -0.3})
    return fig
