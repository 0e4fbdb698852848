"""Figures of the searches before a run: the LR range test's curve, a head search's trials, and
a learning-rate schedule.

Pure functions of plain data: the LR and search figures take the ``to_dict()`` of an
:class:`~tlcore.training.lr_finder.LRFinding` or :class:`~tlcore.training.head_search.HeadSearch`,
which is also what a background task leaves in its ``result.json`` (non-finite numbers there
are null), so a page draws a finished task without loading anything else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tlcore.report.plots import RUN_COLORS

RAW_COLOR, SMOOTH_COLOR, MARK_COLOR, TRIAL_COLOR, BEST_COLOR = (
    "#56B4E9", "#0072B2", "#D55E00", "#0072B2", "#D55E00")
SEARCHED = {
    "learning_rate": ("learning rate", True),
    "dropout": ("dropout", False),
    "label_smoothing": ("label smoothing", False),
    "weight_decay": ("weight decay", True),
    "head_hidden_units": ("hidden units", False),
}
"""Searched setting -> its axis title and whether its axis is logarithmic, in subplot order."""
HEADROOM = 1.15
"""The loss axis ends this far above the highest smoothed loss: a diverged step's raw loss
would otherwise squash the whole curve to the bottom of the chart."""


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def lr_curve_figure(finding: Mapping[str, Any]) -> go.Figure:
    """Loss against learning rate (log x): each step's loss, the smoothed curve and the
    suggested rate marked and labelled with its rule."""
    rates, smoothed = list(finding["rates"]), list(finding["smoothed"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=rates, y=list(finding["losses"]), mode="markers", name="loss per step",
                             marker={"color": RAW_COLOR, "size": 5, "opacity": 0.6}))
    fig.add_trace(go.Scatter(x=rates, y=smoothed, mode="lines", name="smoothed",
                             line={"color": SMOOTH_COLOR, "width": 3}))
    suggestion = finding["suggestion"]
    fig.add_vline(x=math.log10(suggestion), line_color=MARK_COLOR, line_dash="dash")
    fig.add_annotation(x=math.log10(suggestion), y=1.0, yref="paper", showarrow=False, xanchor="left",
                       yanchor="bottom", font={"color": MARK_COLOR},
                       text=f"suggested {suggestion:.2g}: {finding['rule']}")
    if finding.get("min_over_ten"):
        fig.add_vline(x=math.log10(finding["min_over_ten"]), line_color="gray", line_dash="dot")
    heights = _finite(smoothed)
    if heights:
        fig.update_yaxes(range=[0, HEADROOM * max(heights)])
    fig.update_xaxes(type="log", title_text="learning rate")
    fig.update_layout(yaxis_title="training loss", height=380, margin={"t": 60, "b": 40, "l": 50, "r": 10},
                      legend={"orientation": "h", "y": -0.25}, title={"text": "LR range test", "y": 0.97})
    return fig


def _axis_value(name: str, value: Any) -> Any:
    """Hidden units on a category axis, with 0 spelled as no hidden layer."""
    if name == "head_hidden_units":
        return "none" if not value else str(int(value))
    return value


def trials_figure(search: Mapping[str, Any]) -> go.Figure:
    """Validation accuracy against each searched setting, one subplot each; the best trial
    is a larger star of another colour in every subplot."""
    trials, best = list(search["trials"]), search["best"]["number"]
    names = [name for name in SEARCHED if trials and name in trials[0]["params"]]
    fig = make_subplots(rows=1, cols=max(1, len(names)), shared_yaxes=True,
                        subplot_titles=[SEARCHED[name][0] for name in names])
    for column, name in enumerate(names, 1):
        for is_best in (False, True):
            shown = [trial for trial in trials if (trial["number"] == best) == is_best]
            fig.add_trace(go.Scatter(
                x=[_axis_value(name, trial["params"][name]) for trial in shown],
                y=[trial["val_accuracy"] for trial in shown], mode="markers",
                name="best trial" if is_best else "trial", legendgroup=str(is_best), showlegend=column == 1,
                text=[f"trial {trial['number']}" for trial in shown],
                hovertemplate="%{text}: %{x}, validation accuracy %{y:.1%}<extra></extra>",
                marker={"color": BEST_COLOR if is_best else TRIAL_COLOR, "size": 14 if is_best else 8,
                        "symbol": "star" if is_best else "circle", "opacity": 1.0 if is_best else 0.6},
            ), row=1, col=column)
        if SEARCHED[name][1]:
            fig.update_xaxes(type="log", row=1, col=column)
        elif name == "head_hidden_units":
            fig.update_xaxes(type="category", row=1, col=column)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    fig.update_layout(height=340, margin={"t": 50, "b": 40, "l": 50, "r": 10},
                      legend={"orientation": "h", "y": -0.25},
                      title={"text": f"Head search: {len(trials)} trials", "y": 0.98})
    return fig


def schedule_figure(rates: Sequence[float], title: str) -> go.Figure:
    """The learning rate of every step of a stage, as a schedule gives it."""
    fig = go.Figure(go.Scatter(x=list(range(1, len(rates) + 1)), y=list(rates), mode="lines",
                               line={"color": RUN_COLORS[0], "width": 2.5}, name="learning rate"))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="learning rate", height=300,
                      margin={"t": 50, "b": 40, "l": 60, "r": 10}, yaxis={"exponentformat": "e"})
    return fig
