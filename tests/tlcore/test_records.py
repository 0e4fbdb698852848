from pathlib import Path

import pytest

from tlcore.records import ACTIVE, TERMINAL, RunArtifacts, RunStatus, RunSummary


def test_statuses_are_their_strings_and_split_into_active_and_terminal():
    assert [str(s) for s in RunStatus] == ["queued", "running", "finished", "failed", "stopped"]
    assert RunStatus("finished") is RunStatus.FINISHED and f"{RunStatus.FAILED}" == "failed"
    assert set(RunStatus) == ACTIVE | TERMINAL and not ACTIVE & TERMINAL
    assert "running" in ACTIVE  # a plain string from elsewhere (a RunResult) is found too
    with pytest.raises(ValueError):
        RunStatus("done")


def test_summary_round_trips_through_its_dict():
    summary = RunSummary(
        test_accuracy=0.875, macro_f1=0.86, top_k=3, test_top_k_accuracy=1.0, best_val_accuracy=0.9,
        trainable_params=6405, total_params=420_000, train_seconds=12.5, epochs=3, num_classes=5,
        counts={"train": {"a": 10, "b": 12}, "test": {"a": 2, "b": 3}},
    )
    assert RunSummary.from_dict(summary.to_dict()) == summary


def test_summary_from_an_old_or_partial_dict_leaves_missing_fields_empty():
    summary = RunSummary.from_dict({"test_accuracy": 0.5, "test_top5_accuracy": 0.75, "unknown": 1})
    assert summary.test_accuracy == 0.5 and summary.top_k == 5 and summary.test_top_k_accuracy == 0.75
    assert summary.macro_f1 is None and summary.epochs is None and summary.counts == {}
    with pytest.raises(TypeError):
        RunSummary.from_dict({"macro_f1": 0.4})  # every summary ever written has a test accuracy


def test_artifact_names_stay_those_existing_run_folders_hold(tmp_path: Path):
    artifacts = RunArtifacts(tmp_path / "3f2a9c01be47")
    names = {
        "model": "model.keras", "report": "report.json",
        "class_names": "class_names.json", "mistakes": "mistakes", "checkpoint": "checkpoint",
        "worker_log": "worker.log", "disk_full_marker": "disk-full", "exports": "exports",
    }
    assert {attr: getattr(artifacts, attr).relative_to(artifacts.folder).as_posix() for attr in names} \
        == names
    assert artifacts.report.name == RunArtifacts.REPORT
    assert artifacts.class_names.name == RunArtifacts.CLASS_NAMES
    assert artifacts.mistake_thumbnail(7) == artifacts.folder / "mistakes" / "07.png"
    assert artifacts.export("tflite") == artifacts.folder / "exports" / "3f2a9c01be47-tflite.zip"
    assert artifacts.results == (artifacts.model, artifacts.report, artifacts.class_names, artifacts.mistakes)
    assert RunArtifacts(artifacts.folder) == artifacts
