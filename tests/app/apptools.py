"""Helpers for the AppTest page tests: open a page, read its text, make images and zips."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from tlcore.runs.store import RunStore

APP = Path(__file__).resolve().parents[2] / "app.py"
TIMEOUT_S = 90


def open_app(page: str | None = None) -> AppTest:
    """The app after its first run, switched to ``page`` (e.g. ``"pages/train.py"``)."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    if page:
        at.switch_page(page).run()
    return at


def texts(at: AppTest) -> str:
    """All the text a person would read on the page (markdown, captions, alerts), joined."""
    parts = [e.value for kind in ("markdown", "caption", "success", "info", "warning", "error",
                                   "title", "subheader") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def wait_until_ended(store: RunStore, run_id: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while store.get(run_id).is_active:
        assert time.monotonic() < deadline, f"run {run_id} still {store.get(run_id).status}"
        time.sleep(0.5)


def png_bytes(color: tuple[int, int, int], size: int = 40, shape: str = "square") -> bytes:
    image = Image.new("RGB", (size, size), (240, 240, 240))
    pixels = np.array(image)
    if shape == "square":
        pixels[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = color
    else:
        pixels[:, size // 2 - 3: size // 2 + 3] = color
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def class_zip(per_class: int = 8) -> bytes:
    """A zip of two class folders (squares and bars) holding small PNGs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for shape in ("square", "bar"):
            for i in range(per_class):
                archive.writestr(f"toys/{shape}/{i:02d}.png", png_bytes((20 * i, 90, 200), shape=shape))
    return buffer.getvalue()
