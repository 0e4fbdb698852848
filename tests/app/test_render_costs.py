"""What keeps renders cheap: no Keras reset after a run, finished runs' charts built once,
and the classifier on Compare & Classify as a fragment (an upload reruns only that section)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import keras
import pytest
from apptools import APP, open_app, png_bytes
from PIL import Image
from streamlit.runtime.scriptrunner import script_runner

from ui import glue

sys.path.insert(0, str(APP.parent / "bench"))
import st_client  # noqa: E402  (bench/st_client.py: the browser's protocol, without a browser)


def test_streamlit_no_longer_resets_keras_after_each_run(monkeypatch: pytest.MonkeyPatch):
    resets = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: resets.append(1))
    at = open_app("pages/home.py")
    at.run()
    assert not at.exception
    assert script_runner._clean_problem_modules is glue._clean_problem_modules_but_keras
    assert resets == []


def test_finished_runs_charts_and_reports_are_built_once_for_all_renders(
        with_trained_runs, monkeypatch: pytest.MonkeyPatch):
    built: list[str] = []
    for name in ("comparison_figure", "confusion_figure", "per_class_f1_figure"):
        monkeypatch.setattr(glue, name, _counted(name, getattr(glue, name), built))
    for cache in (glue._comparison_chart, glue._confusion_chart, glue._per_class_f1_chart, glue._report):
        cache.clear()
    at = open_app("pages/compare.py")
    at.run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 5
    assert sorted(built) == ["comparison_figure"] * 2 + ["confusion_figure"] * 2 + ["per_class_f1_figure"]
    assert glue.finished_report(glue.store().get(with_trained_runs.run_ids[0])).class_names


@pytest.mark.slow
def test_an_upload_on_a_real_server_reruns_only_the_classifier(with_trained_runs, tmp_path: Path):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true"],
        cwd=APP.parent, env={**os.environ, "TL_AUTH": "off"}, start_new_session=True,
        stdout=(tmp_path / "server.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base)
        page, upload = asyncio.run(_visit_compare_and_upload(base))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert not page.errors and page.count("plotly_chart") == 5
    assert upload.fragment and not upload.errors
    assert upload.shows("heading", "Classify your images")
    assert not upload.shows("heading", "Learning curves")  # the rest of the page did not rerun
    assert upload.count("plotly_chart") == 1  # the predictions of both runs


def _counted(name: str, build: Callable[..., object], calls: list[str]) -> Callable[..., object]:
    def counting(*args: object, **kwargs: object) -> object:
        calls.append(name)
        return build(*args, **kwargs)
    return counting


async def _visit_compare_and_upload(base: str) -> tuple[st_client.Render, st_client.Render]:
    session = st_client.Session(base, timeout=120)
    try:
        page = await session.open("compare")
        jpeg = io.BytesIO()
        Image.open(io.BytesIO(png_bytes((200, 30, 30), size=96))).save(jpeg, "JPEG")
        return page, await session.upload("square.jpg", "image/jpeg", jpeg.getvalue())
    finally:
        await session.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as answer:
                if answer.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.25)
    raise AssertionError("streamlit did not become healthy")
