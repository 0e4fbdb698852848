"""`audit RUN`: the data audit from the CLI, as JSON and as text, computed once and reused."""

from __future__ import annotations

import json

from tlcore.cli import main
from tlcore.config import RunSpec
from tlcore.records import RunArtifacts, RunStatus
from tlcore.runs.auditing import AUDIT_FILE, audit_folder
from tlcore.runs.store import RunStore

TINY = ["--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35",
        "--weights", "none", "--image-size", "32", "--epochs", "1", "--strategy", "frozen", "--json"]


def test_the_audit_is_printed_as_json_then_as_text_from_the_stored_one(capsys) -> None:
    assert main(["train", *TINY]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]

    assert main(["audit", run_id, "--json"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert f"Auditing run {run_id}" in captured.err, "progress goes to stderr, JSON alone to stdout"
    assert payload["run_id"] == run_id and payload["reused"] is False
    assert payload["class_names"] == json.loads(
        (RunStore().artifact_dir(run_id) / RunArtifacts.CLASS_NAMES).read_text())
    assert set(payload["sizes"]) == {"train", "val", "test"}
    assert (payload["exact_threshold"], payload["near_threshold"]) == (0.9999, 0.9)
    assert [(c["split"], c["other_split"]) for c in payload["leak_counts"]] == [
        ("test", "train"), ("test", "val"), ("val", "train")]
    total = sum(c["exact"] + c["near"] for c in payload["leak_counts"])
    assert len(payload["leaks"]) == min(total, 50)
    for pair in payload["leaks"]:
        assert set(pair) == {"kind", "split", "index", "id", "label", "other_split", "other_index",
                             "other_id", "other_label", "similarity"}
        assert pair["similarity"] >= payload["near_threshold"] and pair["kind"] in ("exact", "near")
    assert len(payload["label_issues"]) == min(payload["label_issue_count"], 50)
    stored = json.loads((RunStore().artifact_dir(run_id) / RunArtifacts.PREDICTIONS).read_text())
    answers = dict(zip(stored["ids"], zip(stored["true"], stored["predicted"], strict=True), strict=True))
    assert len(payload["map_points"]) == payload["sizes"]["test"]
    assert all(answers[p["id"]] == (p["label"], p["predicted"]) for p in payload["map_points"])
    assert all(isinstance(w, str) and w.endswith(".") for w in payload["warnings"])
    assert "0.9999" in payload["criteria"]

    stored_at = (audit_folder(RunStore(), run_id) / AUDIT_FILE).stat().st_mtime_ns
    assert main(["audit", run_id]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Run {run_id}: ") and "(stored audit)" in text.splitlines()[0]
    assert all(f"! {warning}" in text for warning in payload["warnings"])
    assert payload["criteria"] in text and "Map: t-SNE" in text
    assert ("Copies across splits (" in text) == bool(payload["leaks"])
    assert (audit_folder(RunStore(), run_id) / AUDIT_FILE).stat().st_mtime_ns == stored_at

    assert main(["audit", run_id, "--again", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] is False and again["created_at"] > payload["created_at"]
    assert again["leak_counts"] == payload["leak_counts"], "the same features give the same audit"


def test_a_bad_run_id_and_a_scratch_run_exit_2_with_one_line(capsys) -> None:
    assert main(["audit", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No run with id 'nope'.") and err.count("\n") == 1
    assert main(["audit", "../etc"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    store = RunStore()
    scratch, _ = store.create_run(RunSpec().with_strategy("scratch"))
    store.finish(scratch.id, RunStatus.FINISHED)
    assert main(["audit", scratch.id]) == 2
    err = capsys.readouterr().err
    assert "trained from scratch" in err and "frozen or fine-tuned run" in err and err.count("\n") == 1
