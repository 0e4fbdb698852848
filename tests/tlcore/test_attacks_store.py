"""Third round of hostile input, on the shared state: experiments, run records, metrics, workers.

Everything under ``TL_HOME`` is shared by the people of one server, so one damaged or forged
file there must not break a page or a command for all of them, nor pass one person's run off
as another's.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from runfiles import finished_run as finished
from specs import tiny_spec

from tlcore.cli import main
from tlcore.config import RunSpec, TrainSpec
from tlcore.errors import ConfigError
from tlcore.records import EpochRecord
from tlcore.runs import doctor, jobs
from tlcore.runs.experiments import experiments_dir, list_experiments, load_experiment, save_experiment
from tlcore.runs.store import RECORD_FILE, RunStore

# --- experiment files that are JSON, but not an experiment ----------------------------------


@pytest.mark.parametrize("content", [
    "[1, 2]", '"flowers"', "5", "null", '{"name": 5, "spec": {}}', '{"name": "x", "saved_at": [1]}',
    '{"name": ["a"], "saved_at": 1}',
], ids=["list", "string", "number", "null", "name-a-number", "time-a-list", "name-a-list"])
def test_one_odd_experiment_file_does_not_hide_everyone_elses(content: str) -> None:
    save_experiment("flowers", tiny_spec())
    (experiments_dir() / "odd.json").write_text(content)
    assert list_experiments() == ["flowers"]
    assert load_experiment("flowers").key() == tiny_spec().key()


def test_a_copy_of_an_experiment_under_another_file_name_is_not_listed_twice() -> None:
    save_experiment("flowers", tiny_spec())
    [original] = experiments_dir().glob("*.json")
    payload = json.loads(original.read_text())
    (experiments_dir() / "flowers-00000000.json").write_text(json.dumps({**payload, "saved_at": 2e9}))
    assert list_experiments() == ["flowers"]


@pytest.mark.parametrize("content", ["[1, 2]", '{"spec": []}', '{"spec": "frozen"}', '"x"'])
def test_loading_an_experiment_file_of_the_wrong_shape_says_it_is_damaged(content: str) -> None:
    save_experiment("flowers", tiny_spec())
    [path] = experiments_dir().glob("*.json")
    path.write_text(content)
    with pytest.raises(ConfigError, match="'flowers' is damaged"):
        load_experiment("flowers")


# --- a run.json that lies ----------------------------------------------------------------------


def forge(store: RunStore, run_id: str, change) -> None:
    path = store.artifact_dir(run_id) / RECORD_FILE
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


LIES = {
    "notes-a-string": lambda p: p["run"].update(notes="pwned"),
    "time-a-string": lambda p: p["run"].update(created_at="yesterday"),
    "accuracy-a-string": lambda p: p["run"]["summary"].update(test_accuracy="high"),
    "epoch-a-string": lambda p: p["epochs"][0].update(epoch="1"),
    "loss-a-list": lambda p: p["epochs"][0].update(loss=[0.1]),
    "still-running": lambda p: p["run"].update(status="running", worker_pid=1),
    "spec-of-the-wrong-type": lambda p: p["run"]["spec"]["train"].update(epochs="many"),
    "owner-a-number": lambda p: p["run"].update(owner=7),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_run_json_with_values_of_the_wrong_type_is_not_listed_again(capsys, lie: str) -> None:
    store = RunStore()
    honest, forged = finished(store, 1e-3), finished(store, 3e-3)
    forge(store, forged, LIES[lie])
    store.db_path.write_bytes(b"garbage" * 200)

    result = doctor.rebuild()
    assert result.restored == (honest,) and result.unrecoverable == (forged,)
    assert main(["runs"]) == 0  # before: a traceback here and on every page, for everyone
    out = capsys.readouterr().out
    assert honest in out and forged not in out


def test_a_run_json_with_another_specs_key_cannot_pass_its_model_off_as_that_spec() -> None:
    store = RunStore()
    forged = finished(store, 3e-3)
    victim = RunSpec(train=TrainSpec(strategy="frozen", learning_rate=1e-2))  # never trained
    forge(store, forged, lambda p: p["run"].update(key=victim.key()))
    store.db_path.write_bytes(b"garbage" * 200)

    assert doctor.rebuild().unrecoverable == (forged,)
    run, reused = RunStore().create_run(victim)
    assert not reused and run.id != forged  # before: "reused" the forged run's model


def test_the_record_of_an_honest_run_still_round_trips() -> None:
    store = RunStore()
    run_id = finished(store, 1e-3)
    record, epochs = store.read_record(run_id)
    assert record.id == run_id and record.summary.test_accuracy == 0.8 and len(epochs) == 1


# --- metrics that are not numbers -------------------------------------------------------------


def test_a_diverged_epoch_with_nan_and_inf_metrics_reads_back_and_shows(capsys) -> None:
    """SQLite stores NaN as NULL: a run whose loss diverged (or that had no validation) read back None."""
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    store.add_epoch(run.id, EpochRecord(1, "frozen", math.nan, 0.5, math.inf, math.nan, 1e-3, 1.0, 10.0))
    [epoch] = store.epochs(run.id)
    assert math.isnan(epoch.loss) and epoch.val_loss == math.inf and math.isnan(epoch.val_accuracy)
    assert main(["show", run.id]) == 0  # before: TypeError from formatting None
    assert "loss nan acc 0.500 val_loss inf" in capsys.readouterr().out
    assert main(["show", run.id, "--json"]) == 0  # strict JSON: no NaN or Infinity tokens
    [record] = json.loads(capsys.readouterr().out)["history"]
    assert record["loss"] is None and record["val_loss"] is None and record["accuracy"] == 0.5


# --- paths a worker reads in another folder ---------------------------------------------------

REPORTER = ("import os; print(os.path.abspath(os.environ['TL_HOME']));"
            " print(os.path.abspath(os.environ['TL_DATA_ROOT'].split(os.pathsep)[0]))")


def test_a_worker_finds_the_same_store_and_data_roots_from_relative_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers run in the project folder: a relative TL_HOME there named an empty store elsewhere."""
    here = tmp_path / "where-the-app-runs"
    (here / "data").mkdir(parents=True)
    monkeypatch.chdir(here)
    monkeypatch.setenv("TL_HOME", "studio-home")
    monkeypatch.setenv("TL_DATA_ROOT", "data")
    real_popen = subprocess.Popen

    def report_paths(args, **kwargs):  # the worker's environment and folder, not a real worker
        return real_popen([sys.executable, "-c", REPORTER], **kwargs)

    monkeypatch.setattr(jobs.subprocess, "Popen", report_paths)
    store = RunStore()
    run = jobs.submit(tiny_spec(), store).run
    jobs._children[-1].wait(timeout=60)
    home, root = store.artifacts(run.id).worker_log.read_text().splitlines()[-2:]
    assert Path(home) == here / "studio-home"
    assert Path(root) == here / "data"
