"""The CLI's run list and comparison show accuracies as the app does; JSON and CSV keep numbers."""

import json

from specs import tiny_spec

from tlcore.cli import main
from tlcore.records import RunStatus, RunSummary
from tlcore.runs.store import RunStore


def ended_run(store, epochs, status, accuracy=None):
    run, _ = store.create_run(tiny_spec(epochs=epochs))
    if accuracy is not None:
        store.update(run.id, summary=RunSummary(test_accuracy=accuracy, best_val_accuracy=accuracy))
    store.finish(run.id, status, None if accuracy is not None else "boom")
    return run.id


def test_runs_shows_percentages_and_a_dash_for_a_failed_run(capsys):
    store = RunStore()
    good = ended_run(store, 1, RunStatus.FINISHED, 0.96667)
    failed = ended_run(store, 2, RunStatus.FAILED)
    assert main(["runs"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "test_accuracy=96.7%" in lines[f"run_id={good}"]
    assert "test_accuracy=— " in lines[f"run_id={failed}"]
    assert main(["runs", "--json"]) == 0
    rows = {row["run_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[good]["test_accuracy"] == 0.96667 and rows[failed]["test_accuracy"] is None


def test_compare_takes_stopped_runs_with_results_and_shows_percentages(capsys):
    store = RunStore()
    finished = ended_run(store, 1, RunStatus.FINISHED, 0.8)
    stopped = ended_run(store, 2, RunStatus.STOPPED, 0.45)
    assert main(["compare", finished, stopped]) == 0
    header, *lines = capsys.readouterr().out.strip().splitlines()
    assert "80.0%" in lines[0] and "45.0%" in lines[1] and "mobilenet_v2 ×0.35" in lines[1]
    assert main(["compare", finished, stopped, "--csv"]) == 0
    assert "0.45" in capsys.readouterr().out
