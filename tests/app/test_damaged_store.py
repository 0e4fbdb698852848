"""A damaged or unusable store: every page says what is wrong and what to do, never a traceback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from apptools import open_app, texts

from tlcore.config import RunSpec, TrainSpec
from tlcore.records import RunStatus, RunSummary
from tlcore.runs.store import RunStore

PAGES = [None, "pages/configure.py", "pages/train.py", "pages/compare.py"]


@pytest.fixture
def home(isolated_home: Path) -> Iterator[Path]:
    """The test's TL_HOME, removed afterwards: the clean-up after app tests opens its store."""
    yield isolated_home
    if isolated_home.is_dir():
        shutil.rmtree(isolated_home)
    else:
        isolated_home.unlink(missing_ok=True)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_explains_a_garbage_store(home: Path, page: str | None) -> None:
    home.mkdir()
    (home / "runs.sqlite").write_bytes(b"definitely not SQLite\n" * 200)
    at = open_app(page)
    assert not at.exception
    assert [e.value for e in at.error] == [f"The run store {home / 'runs.sqlite'} is damaged "
                                          "(file is not a database)."]
    assert "python -m tlcore doctor --rebuild" in at.info[0].value
    assert "Something went wrong" not in texts(at)


@pytest.mark.parametrize("page", [None, "pages/compare.py"])
def test_a_home_that_is_a_file_is_explained(home: Path, page: str | None) -> None:
    home.write_text("notes")
    at = open_app(page)
    assert not at.exception
    assert len(at.error) == 1 and "TL_HOME" in at.error[0].value and "is a file" in at.error[0].value
    assert "Point TL_HOME at a folder" in at.info[0].value


def test_compare_says_a_finished_runs_files_are_missing(isolated_home: Path) -> None:
    store = RunStore()
    for rate in (1e-3, 3e-3):  # finished, but their folders are gone
        run, _ = store.create_run(RunSpec(train=TrainSpec(strategy="frozen", learning_rate=rate)))
        store.update(run.id, summary=RunSummary(test_accuracy=0.8, epochs=1))
        store.finish(run.id, RunStatus.FINISHED)
    at = open_app("pages/compare.py")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and all("its files are missing" in e for e in errors), errors
    assert any("python -m tlcore doctor" in i.value for i in at.info)
    assert "Something went wrong" not in texts(at)
