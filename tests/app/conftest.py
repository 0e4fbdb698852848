"""Fixtures for the AppTest page tests.

Finished runs are expensive, so one session-scoped home is trained once (two tiny frozen runs,
in this process) and tests that only read runs point ``TL_HOME`` at it. Tests that write get
the isolated home of the autouse fixture in ``tests/conftest.py``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from streamlit import config
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import script_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from specs import tiny_spec  # noqa: E402  (tests/tlcore/specs.py: the shared tiny run)

from tlcore.records import ACTIVE  # noqa: E402
from tlcore.runs import jobs  # noqa: E402
from tlcore.runs.store import RunStore  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def streamlit_as_pinned() -> None:
    """Fail every page test when Streamlit drops what the app relies on beyond its public API.

    ``requirements.txt`` pins the minor version these were checked against; before moving the
    pin, review the places named below.
    """
    assert hasattr(PagesManager, "uses_pages_directory"), (
        "streamlit renamed PagesManager.uses_pages_directory: review warm_server below and "
        "ui.glue.require_frame")
    assert hasattr(script_runner, "_clean_problem_modules"), (
        "streamlit renamed script_runner._clean_problem_modules: review ui.glue.keep_keras_state")
    assert config.get_option("runner.postScriptGC") is not None  # raises if the option is gone


@pytest.fixture(autouse=True)
def warm_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run pages as a server does once any session has executed ``st.navigation``.

    AppTest forgets before every run that ``st.navigation`` was called, so with a ``pages/``
    folder beside app.py each run would go through Streamlit's old multipage shim: the state
    of a freshly started server, in which staged file uploads get lost. That cold state lasts
    until the first visit on a real server; ``ui.glue.require_frame`` covers it and
    ``tests/e2e/test_studio_flow.py::test_a_cold_deep_link_gets_the_frame_and_the_run`` proves it.
    """
    original = PagesManager.__init__

    def init_warm(self: PagesManager, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init_warm)


@pytest.fixture(autouse=True)
def stop_leftover_workers() -> Iterator[None]:
    """Cancel runs a test left queued or running, and end the worker processes it started."""
    yield
    store = RunStore()
    for run in store.list_runs(statuses=ACTIVE):
        jobs.cancel(run.id, store)
        if run.worker_pid and run.worker_pid != os.getpid() and jobs.worker_alive(run):
            process = psutil.Process(run.worker_pid)
            process.terminate()
            process.wait(timeout=30)


@dataclasses.dataclass
class TrainedHome:
    root: Path
    run_ids: list[str]


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    """A store with two finished tiny runs (trained here, once per test session)."""
    from tlcore.runs.runner import execute_run

    root = tmp_path_factory.mktemp("trained") / "tlhome"
    keras_home = tmp_path_factory.mktemp("keras")
    saved = {k: os.environ.get(k) for k in ("TL_HOME", "KERAS_HOME")}
    os.environ.update(TL_HOME=str(root), KERAS_HOME=str(keras_home))
    try:
        store = RunStore(root)
        ids = []
        for spec in (tiny_spec("frozen"), tiny_spec("frozen", learning_rate=3e-3, dropout=0.0)):
            run, _ = store.create_run(dataclasses.replace(spec, name=f"tiny lr {spec.train.learning_rate:g}"))
            jobs.claim_for_this_process(store, run.id)
            finished = execute_run(store, run.id)
            assert finished.status == "finished", finished.error
            ids.append(run.id)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return TrainedHome(root, ids)


@pytest.fixture
def with_trained_runs(trained_home: TrainedHome, monkeypatch: pytest.MonkeyPatch) -> TrainedHome:
    """Point this test's TL_HOME at the shared finished runs (read-only use)."""
    monkeypatch.setenv("TL_HOME", str(trained_home.root))
    return trained_home
