"""A run store that is damaged or cannot be written: one plain error with a hint, never a traceback.

Covers ``runs.sqlite`` truncated, overwritten or replaced by a folder, a read-only ``TL_HOME``,
a ``TL_HOME`` that is a file, an empty store beside run folders, and finished runs whose files
were deleted: in the store, in serving and on the command line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from specs import tiny_spec

from tlcore.cli import main
from tlcore.config import RunSpec, TrainSpec
from tlcore.deploy.serving import load_run
from tlcore.errors import ArtifactError, RunStateError, StorageError
from tlcore.records import EpochRecord, RunStatus, RunSummary
from tlcore.runs.database import Database
from tlcore.runs.store import RunStore


def finished(store: RunStore, learning_rate: float = 1e-3) -> str:
    run, _ = store.create_run(RunSpec(train=TrainSpec(strategy="frozen", learning_rate=learning_rate)))
    store.add_epoch(run.id, EpochRecord(1, "frozen", 0.9, 0.6, 1.0, 0.5, 1e-3, 2.0, 10.0))
    store.update(run.id, summary=RunSummary(test_accuracy=0.8, epochs=1))
    store.finish(run.id, RunStatus.FINISHED)
    return run.id


def damage(db: Path, how: str) -> None:
    """Damage a store of two finished runs the ways disks and people do."""
    data = db.read_bytes()
    db.unlink()
    if how == "garbage":
        db.write_bytes(b"these are not the runs you are looking for\n" * 100)
    elif how == "truncated":
        db.write_bytes(data[: len(data) // 2])
    elif how == "header-only":
        db.write_bytes(data[:60])
    else:
        db.mkdir()


def damaged_store(isolated_home: Path, how: str) -> list[str]:
    store = RunStore()
    ids = [finished(store, 1e-3), finished(store, 3e-3)]
    with sqlite3.connect(store.db_path) as conn:  # grow the file past its first pages
        conn.execute("CREATE TABLE padding (x TEXT)")
        conn.executemany("INSERT INTO padding VALUES (?)", [("x" * 500,)] * 200)
    damage(store.db_path, how)
    return ids


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


DAMAGES = ["garbage", "truncated", "header-only", "folder"]


# ---- a damaged runs.sqlite ---------------------------------------------------------------


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_store_is_a_storage_error_that_points_at_the_doctor(isolated_home, how) -> None:
    damaged_store(isolated_home, how)
    with pytest.raises(StorageError, match="is damaged") as caught:
        RunStore()
    assert "python -m tlcore doctor --rebuild" in caught.value.hint


def test_a_store_damaged_while_open_says_so_at_the_next_query(isolated_home) -> None:
    store = RunStore()
    run_id = finished(store)
    store.db_path.write_bytes(b"\0garbage" * 1000)
    with pytest.raises(StorageError, match="is damaged"):
        store.list_runs()
    with pytest.raises(StorageError, match="is damaged"):
        store.get(run_id)


def test_a_full_disk_is_left_to_the_runner_to_report() -> None:
    database = Database(Path("runs.sqlite"), read_only=False)
    assert database.error(sqlite3.OperationalError("database or disk is full")) is None


@pytest.mark.parametrize("how", DAMAGES)
def test_the_cli_reports_a_damaged_store_in_one_line(isolated_home, capsys, how) -> None:
    first, second = damaged_store(isolated_home, how)
    for args in (["runs"], ["show", first], ["compare", first, second]):
        code, out, err = cli(capsys, *args)
        assert_one_line_error(code, err, "is damaged", "doctor --rebuild")
        assert out == ""


# ---- TL_HOME that is a file --------------------------------------------------------------


def test_a_home_that_is_a_file_is_a_storage_error(isolated_home, capsys) -> None:
    isolated_home.write_text("notes")
    with pytest.raises(StorageError, match="is a file, not a folder"):
        RunStore()
    for args in (["runs"], ["show", "abc"], ["doctor", "--rebuild"]):
        code, _, err = cli(capsys, *args)
        assert_one_line_error(code, err, "TL_HOME", "is a file")
    assert isolated_home.read_text() == "notes"


# ---- an empty or missing store beside run folders ----------------------------------------


@pytest.mark.parametrize("store_file", ["empty", "missing"])
def test_an_empty_store_beside_run_folders_says_they_exist(isolated_home, capsys, store_file) -> None:
    store = RunStore()
    run_id = finished(store)
    store.artifact_dir(run_id).mkdir(parents=True)
    if store_file == "empty":
        store.db_path.write_bytes(b"")
    else:
        store.db_path.unlink()
    with pytest.raises(StorageError, match="1 run folder") as caught:
        RunStore()
    assert "doctor --rebuild" in caught.value.hint
    code, out, err = cli(capsys, "runs")
    assert_one_line_error(code, err, run_id, "doctor --rebuild")
    assert "(none)" not in out


def test_an_empty_store_without_run_folders_is_just_empty(isolated_home) -> None:
    isolated_home.mkdir()
    (isolated_home / "runs.sqlite").write_bytes(b"")
    assert RunStore().list_runs() == []


# ---- a read-only TL_HOME -----------------------------------------------------------------


@pytest.fixture
def read_only_home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two finished runs under a home this user cannot write.

    The permission bits are what stop an ordinary user; root ignores them, so for root the
    operating system's answer to "may I write here?" (``os.access``) says no as well.
    """
    store = RunStore()
    ids = [finished(store, 1e-3), finished(store, 3e-3)]
    store.db_path.chmod(0o444)
    isolated_home.chmod(0o555)
    if os.geteuid() == 0:
        real_access = os.access

        def access(path: os.PathLike | str, mode: int, **kwargs: object) -> bool:
            inside = Path(path).absolute().is_relative_to(isolated_home)
            return not (inside and mode & os.W_OK) and real_access(path, mode, **kwargs)

        monkeypatch.setattr(os, "access", access)
    yield ids
    isolated_home.chmod(0o755)
    (isolated_home / "runs.sqlite").chmod(0o644)


def folders(home: Path) -> set[str]:
    return {p.name for p in home.iterdir() if p.is_dir()}


def test_a_read_only_store_lists_and_shows_runs_and_refuses_writes(isolated_home, read_only_home) -> None:
    first, second = read_only_home
    before = folders(isolated_home)
    store = RunStore()
    assert store.read_only
    assert {r.id for r in store.list_runs()} == {first, second}
    assert store.get(first).summary.test_accuracy == 0.8 and len(store.epochs(first)) == 1
    for write in (lambda: store.create_run(tiny_spec()), lambda: store.update(first, progress=0.5),
                  lambda: store.delete(first), lambda: store.write_json(first, "x.json", {})):
        with pytest.raises(StorageError, match="read-only") as caught:
            write()
        assert "TL_HOME" in caught.value.hint
    assert folders(isolated_home) == before == set()  # no runs/ folder was made for reading


def test_the_cli_reads_a_read_only_store_and_refuses_to_change_it(
    isolated_home, read_only_home, capsys
) -> None:
    first, second = read_only_home
    code, out, _ = cli(capsys, "runs")
    assert code == 0 and first in out and second in out
    code, out, _ = cli(capsys, "show", first)
    assert code == 0 and f"run {first}: finished" in out
    code, out, _ = cli(capsys, "compare", first, second)
    assert code == 0 and first in out and "80.0%" in out
    code, _, err = cli(capsys, "delete", first)
    assert_one_line_error(code, err, "read-only")
    code, _, err = cli(capsys, "doctor", "--rebuild")
    assert_one_line_error(code, err, "read-only")
    assert folders(isolated_home) == set()


def test_a_read_only_home_without_a_store_says_none_can_be_made(isolated_home, monkeypatch) -> None:
    isolated_home.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: not mode & os.W_OK)
    with pytest.raises(StorageError, match="read-only, so none can be made"):
        RunStore()


# ---- a finished run whose files are gone -------------------------------------------------


def test_a_finished_run_without_its_folder_says_its_files_are_missing(capsys, tmp_path) -> None:
    store = RunStore()
    run_id = finished(store)
    with pytest.raises(ArtifactError, match="its files are missing") as caught:
        load_run(run_id, store)
    assert "model.keras" in caught.value.message and "python -m tlcore doctor" in caught.value.hint
    assert "Only runs that finished" not in str(caught.value)
    with pytest.raises(ArtifactError, match="its files are missing"):
        store.read_json(run_id, "report.json")
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG")
    code, _, err = cli(capsys, "predict", run_id, str(image))
    assert_one_line_error(code, err, "its files are missing", "doctor")


def test_a_finished_run_missing_only_its_class_names_names_that_file() -> None:
    store = RunStore()
    run_id = finished(store)
    artifacts = store.artifacts(run_id)
    artifacts.folder.mkdir(parents=True)
    artifacts.model.write_bytes(b"a model")
    store.write_json(run_id, "report.json", {})
    with pytest.raises(ArtifactError, match=r"files are missing \(class_names.json not found"):
        load_run(run_id, store)


def test_an_unfinished_run_still_says_it_has_no_results_yet() -> None:
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    with pytest.raises(RunStateError, match="no report.json yet"):
        store.read_json(run.id, "report.json")
    store.request_stop(run.id)  # stopped before any epoch: nothing was ever saved
    with pytest.raises(RunStateError, match="no saved model"):
        load_run(run.id, store)


# ---- the record each run keeps in its folder ---------------------------------------------


def test_a_run_record_round_trips_through_its_folder(isolated_home) -> None:
    store = RunStore()
    run_id = finished(store)
    store.add_note(run_id, "a note")
    summary = store.get(run_id).summary
    store.write_record(run_id, RunStatus.FINISHED, summary)
    original, epochs = store.get(run_id), store.epochs(run_id)

    shutil.move(store.db_path, isolated_home.parent / "elsewhere.sqlite")
    fresh = RunStore(adopt_folders=True)
    run, read_epochs = fresh.read_record(run_id)
    assert fresh.restore(run, read_epochs) and not fresh.restore(run, read_epochs)
    restored = fresh.get(run_id)
    assert restored.spec == original.spec and restored.summary == summary
    assert restored.notes == ["a note"] and restored.status == RunStatus.FINISHED
    assert fresh.epochs(run_id) == epochs


def test_a_damaged_run_record_is_an_artifact_error() -> None:
    store = RunStore()
    run_id = finished(store)
    store.write_json(run_id, "run.json", {"run": {"id": run_id}})
    with pytest.raises(ArtifactError, match="run.json"):
        store.read_record(run_id)
