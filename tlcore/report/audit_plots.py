"""The data audit's figure: the test embeddings in two dimensions, by class, mistakes marked."""

from __future__ import annotations

from html import escape

import plotly.graph_objects as go

from tlcore.data.labels import visible_label
from tlcore.report.audit import DataAudit, MapPoint
from tlcore.report.plots import RUN_COLORS

MISTAKE_SYMBOL = "x"
RIGHT_SYMBOL = "circle"


def embedding_map_figure(audit: DataAudit) -> go.Figure:
    """One trace per class (its colour, in the legend), crosses for the run's mistakes.

    Neighbours on the map look alike to the frozen backbone: a mistake among another class's
    points is an image that resembles that class (or is labelled wrongly); a class spread in
    two clusters may hold two kinds of picture. Hovering a point gives its file, class and the
    run's answer; each point's ``customdata`` is its place in ``audit.map_points``, so a page can
    show the picked point's picture.
    """
    fig = go.Figure()
    names = [visible_label(name) for name in audit.class_names]
    for label, name in enumerate(names):
        points = [(position, point) for position, point in enumerate(audit.map_points)
                  if point.label == label]
        color = RUN_COLORS[label % len(RUN_COLORS)]
        for mistakes in (False, True):
            picked = [(position, point) for position, point in points if point.mistake == mistakes]
            if not picked:
                continue
            shown = [point for _, point in picked]
            fig.add_trace(go.Scatter(
                x=[point.x for point in shown], y=[point.y for point in shown], mode="markers",
                customdata=[position for position, _ in picked],
                name=f"{name} (mistakes)" if mistakes else name, legendgroup=name,
                marker={"color": color, "symbol": MISTAKE_SYMBOL if mistakes else RIGHT_SYMBOL,
                        "size": 10 if mistakes else 6, "opacity": 1.0 if mistakes else 0.6,
                        "line": {"width": 1, "color": "#000000"} if mistakes else {"width": 0}},
                text=[hover_text(point, names) for point in shown], hoverinfo="text",
            ))
    mistakes = sum(point.mistake for point in audit.map_points)
    fig.update_layout(
        title=f"Test embeddings: {audit.map_method}<br>{mistakes} mistake(s) marked ×",
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
        legend={"title": {"text": "class"}}, height=520, margin={"l": 10, "r": 10, "t": 70, "b": 10},
    )
    return fig


def hover_text(point: MapPoint, names: list[str]) -> str:
    """What hovering a point says: the image, its class, the run's answer (names escaped)."""
    answer = names[point.predicted] if 0 <= point.predicted < len(names) else "?"
    verdict = "wrong" if point.mistake else "right"
    return (f"{escape(visible_label(point.id))}<br>class: {escape(names[point.label])}"
            f"<br>predicted: {escape(answer)} ({verdict})")
