"""``python -m tlcore doctor``: it finds what is wrong without changing anything, and rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

from runfiles import finished_run as finished
from specs import tiny_spec

from tlcore.cli import main
from tlcore.config import RunSpec
from tlcore.records import RunStatus
from tlcore.runs import doctor, jobs
from tlcore.runs.store import RunStore

GARBAGE = b"not a database at all\n" * 50


def problems(home: Path) -> list[str]:
    return [f"{f.area}: {f.message}" for f in doctor.check(home).problems]


def test_a_sound_home_is_healthy_and_checking_it_changes_nothing(isolated_home) -> None:
    store = RunStore()
    finished(store)
    before = sorted(p.relative_to(isolated_home) for p in isolated_home.rglob("*") if "sqlite" not in p.name)
    checkup = doctor.check(isolated_home)
    assert checkup.healthy, checkup.describe()
    assert "lists 1 run(s)" in checkup.describe()
    after = sorted(p.relative_to(isolated_home) for p in isolated_home.rglob("*") if "sqlite" not in p.name)
    assert after == before


def test_a_missing_home_is_fine_and_is_not_created(isolated_home) -> None:
    assert doctor.check(isolated_home).healthy
    assert not isolated_home.exists()


def test_a_damaged_store_is_found_and_rebuilt_from_the_run_folders(isolated_home) -> None:
    store = RunStore()
    kept_ids = [finished(store, 1e-3), finished(store, 3e-3)]
    old = finished(store, 1e-2, record=False)  # saved before runs kept their record
    store.db_path.write_bytes(GARBAGE)

    found = problems(isolated_home)
    assert any(p.startswith("store:") and "is damaged" in p for p in found), found
    assert any(p.startswith("runs:") and "3 run folder(s)" in p for p in found), found

    result = doctor.rebuild(isolated_home)
    assert result.kept.name.startswith("runs.sqlite.damaged-") and result.kept.read_bytes() == GARBAGE
    assert sorted(result.restored) == sorted(kept_ids) and result.unrecoverable == (old,)
    rebuilt = RunStore()
    assert {r.id for r in rebuilt.list_runs()} == set(kept_ids)
    assert rebuilt.get(kept_ids[0]).summary.test_accuracy == 0.8
    assert len(rebuilt.epochs(kept_ids[0])) == 1
    unlisted = f"runs: 1 run folder(s) are on disk that the store does not list: {old}."
    assert problems(isolated_home) == [unlisted]


def test_an_empty_store_beside_run_folders_is_rebuilt(isolated_home) -> None:
    store = RunStore()
    run_id = finished(store)
    store.db_path.write_bytes(b"")
    assert any("the store does not list" in p for p in problems(isolated_home))
    result = doctor.rebuild(isolated_home)
    assert result.kept is not None and result.restored == (run_id,)
    assert doctor.check(isolated_home).healthy


def test_rebuilding_a_sound_store_only_adds_what_it_lacks(isolated_home) -> None:
    store = RunStore()
    listed = finished(store, 1e-3)
    lost = finished(store, 3e-3)
    with store.transaction() as conn:
        conn.execute("DELETE FROM runs WHERE id = ?", (lost,))
    result = doctor.rebuild(isolated_home)
    assert result.kept is None and result.restored == (lost,)
    assert {r.id for r in store.list_runs()} == {listed, lost}


def test_finished_runs_whose_files_are_missing_are_named(isolated_home) -> None:
    store = RunStore()
    gone, half = finished(store, 1e-3), finished(store, 3e-3)
    for path in store.artifact_dir(gone).iterdir():
        path.unlink()
    store.artifact_dir(gone).rmdir()
    store.artifacts(half).report.unlink()
    found = problems(isolated_home)
    assert f"runs: run {gone} is finished, but its files are missing (model.keras, report.json, " \
           "class_names.json)." in found
    assert f"runs: run {half} is finished, but its files are missing (report.json)." in found


def test_a_cache_folder_that_is_a_file_is_a_problem(isolated_home) -> None:
    RunStore()
    (isolated_home / "features").write_text("oops")
    (isolated_home / "pixels").mkdir()
    found = problems(isolated_home)
    assert found == [f"caches: the feature store {isolated_home / 'features'} is a file, not a folder."]
    assert "the pixel store (pixels/) holds 0 entries" in doctor.check(isolated_home).describe()


def test_the_cli_prints_the_checkup_and_rebuilds(isolated_home, capsys) -> None:
    store = RunStore()
    run_id = finished(store)
    store.db_path.write_bytes(GARBAGE)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"TL_HOME {isolated_home}\n") and "PROBLEM store:" in out
    assert "doctor --rebuild" in out
    assert main(["doctor", "--rebuild"]) == 0
    out = capsys.readouterr().out
    assert "kept the old store as" in out and f"listed 1 run(s) again: {run_id}" in out
    assert "PROBLEM" not in out
    assert main(["runs", "--json"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == [run_id]


def test_a_real_run_keeps_its_record_and_is_served_again_after_a_rebuild(isolated_home, capsys) -> None:
    from tlcore.runs.runner import execute_run

    store = RunStore()
    run, _ = store.create_run(tiny_spec("frozen"))
    jobs.claim_for_this_process(store, run.id)
    done = execute_run(store, run.id)
    assert done.status == RunStatus.FINISHED, done.error
    record = json.loads((store.artifact_dir(run.id) / "run.json").read_text())
    assert record["run"]["status"] == "finished" and RunSpec.from_dict(record["run"]["spec"]) == run.spec
    assert record["run"]["summary"] == done.summary.to_dict() and len(record["epochs"]) == 1

    store.db_path.write_bytes(GARBAGE)
    assert main(["doctor", "--rebuild"]) == 0
    capsys.readouterr()
    assert main(["show", run.id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "finished" and shown["test"]["accuracy"] == done.summary.test_accuracy
