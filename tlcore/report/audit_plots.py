"""The data audit's figure: the test embeddings in two dimensions, by class, mistakes marked.

The app draws the map with Vega-Lite (:func:`embedding_map_spec`), whose tooltips show a picture
(vega-tooltip draws a field named ``image`` as one), so hovering a point shows the test image
itself, not only its name (a Plotly hover can only be text).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from tlcore.data.labels import visible_label
from tlcore.errors import BadImageError
from tlcore.images import load_image
from tlcore.report.audit import DataAudit, MapPoint
from tlcore.report.plots import RUN_COLORS

CROSS_PATH = ("M0.54,-1 L1,-0.54 L0.46,0 L1,0.54 L0.54,1 L0,0.46 L-0.54,1 L-1,0.54 L-0.46,0 "
              "L-1,-0.54 L-0.54,-1 L0,-0.46 Z")
"""A filled ×, as an SVG path in Vega's unit square: Vega's own ``cross`` is a +, and rotating it
with ``angle`` would leave the legend's symbol a +."""
MAP_PICTURE_PX = 80
"""Longest side of a hover picture: about 3 KB as a JPEG data URI, so a few hundred test images
(a usual test split) send well under 1 MB, and the audit's 2,000 points at most about 6 MB, once:
Streamlit's browser cache keeps a large unchanged message across reruns."""
MAP_PICTURE_QUALITY = 70
PICKED = "picked"
"""The map's click selection (shift-click adds points); its points carry their ``position``."""
BOXED = "boxed"
"""The map's drag selection: a rectangle in the map's x and y."""
MAP_HEIGHT = 520


def embedding_map_spec(audit: DataAudit, pictures: Sequence[str | None] = ()) -> dict[str, Any]:
    """The map as a Vega-Lite spec: colour by class, mistakes as large outlined crosses.

    Hovering a point shows its picture (``pictures[k]``, a data URI or URL for the ``k``-th of
    ``audit.map_points``; None or a short list leaves it out), its file, class and the run's
    answer. Clicking a point selects it (:data:`PICKED`, shift-click for more) and dragging a
    rectangle selects the points inside (:data:`BOXED`); each row's ``position`` is its place in
    ``audit.map_points``, so a page can show the selected points' pictures larger.
    """
    names = [visible_label(name) for name in audit.class_names]
    rows = [_map_row(position, point, names, pictures[position] if position < len(pictures) else None)
            for position, point in enumerate(audit.map_points)]
    mistakes = sum(point.mistake for point in audit.map_points)
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "title": {"text": "Test embeddings", "anchor": "start",  # lines of their own: a long one is cut
                  "subtitle": [audit.map_method, f"{mistakes} mistake(s) marked ✕ · hover a point to see "
                               "its picture"]},
        "data": {"values": rows},
        "height": MAP_HEIGHT,
        "mark": {"type": "point", "filled": True, "cursor": "pointer"},
        "params": [{"name": PICKED, "select": {"type": "point", "fields": ["position"]}},
                   {"name": BOXED, "select": {"type": "interval", "encodings": ["x", "y"]}}],
        "encoding": _map_encoding(names),
        "config": {"view": {"stroke": None}, "title": {"fontSize": 15, "subtitleFontSize": 13},
                   "legend": {"labelFontSize": 13, "titleFontSize": 13}},
    }


def _map_encoding(names: list[str]) -> dict[str, Any]:
    """Colour by class (the run colours, in class order), shape and size by the run's verdict."""
    hidden = {"axis": None, "scale": {"zero": False}}
    colors = [RUN_COLORS[label % len(RUN_COLORS)] for label in range(len(names))]
    return {
        "x": {"field": "x", "type": "quantitative", **hidden},
        "y": {"field": "y", "type": "quantitative", **hidden},
        "color": {"field": "class", "type": "nominal", "title": "class",
                  "scale": {"domain": names, "range": colors}},
        "shape": {"field": "answer", "type": "nominal", "title": "the run's answer",
                  "scale": {"domain": ["right", "wrong"], "range": ["circle", CROSS_PATH]}},
        "size": {"field": "size", "type": "quantitative", "scale": None, "legend": None},
        "opacity": {"field": "opacity", "type": "quantitative", "scale": None, "legend": None},
        "stroke": {"value": "#000000"},
        "strokeWidth": {"condition": {"param": PICKED, "empty": False, "value": 3},
                        "field": "outline", "type": "quantitative", "scale": None, "legend": None},
        "tooltip": [{"field": name} for name in ("title", "image", "class", "predicted")],
        "description": {"field": "description"},  # what a screen reader says: not the picture's bytes
    }


def _map_row(position: int, point: MapPoint, names: list[str], picture: str | None) -> dict[str, Any]:
    """One point's data; ``title`` and ``image`` are the names vega-tooltip draws as heading and picture.

    Nothing is HTML-escaped here: vega-tooltip escapes every text it shows.
    """
    title, verdict = visible_label(point.id), "wrong" if point.mistake else "right"
    answer = names[point.predicted] if 0 <= point.predicted < len(names) else "?"
    row: dict[str, Any] = {
        "position": position, "x": point.x, "y": point.y, "title": title, "class": names[point.label],
        "predicted": f"{answer} ({verdict})", "answer": verdict,
        "size": 170 if point.mistake else 70, "opacity": 1.0 if point.mistake else 0.7,
        "outline": 1 if point.mistake else 0,
        "description": f"{title}: class {names[point.label]}, predicted {answer} ({verdict})",
    }
    if picture:
        row["image"] = picture
    return row


def picture_uri(path: Path, px: int = MAP_PICTURE_PX) -> str | None:
    """A thumbnail as a small JPEG data URI for a tooltip, or None when it is missing or unreadable.

    Read through :func:`tlcore.images.load_image` like every other picture: a run folder on
    shared storage may hold anything under a thumbnail's name.
    """
    try:
        image = Image.fromarray(load_image(path))
    except BadImageError:
        return None
    image.thumbnail((px, px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=MAP_PICTURE_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
