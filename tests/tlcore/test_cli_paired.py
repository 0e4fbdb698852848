"""`compare A B --paired`: two real runs paired image by image, from the CLI."""

from __future__ import annotations

import json

from tlcore.cli import main
from tlcore.records import RunArtifacts
from tlcore.runs.store import RunStore

TINY = ["--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35",
        "--weights", "none", "--image-size", "32", "--epochs", "1", "--json"]


def train(capsys, *extra: str) -> dict:
    assert main(["train", *TINY, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_two_runs_on_one_split_are_paired_and_old_runs_say_why_not(capsys) -> None:
    first = train(capsys, "--strategy", "frozen")
    second = train(capsys, "--strategy", "frozen", "--lr", "0.01")
    assert main(["compare", first["run_id"], second["run_id"], "--paired", "--json"]) == 0
    paired = json.loads(capsys.readouterr().out)
    store = RunStore()
    stored = json.loads((store.artifact_dir(first["run_id"]) / RunArtifacts.PREDICTIONS).read_text())
    assert paired["images"] == len(stored["identities"]) > 0
    answers = [json.loads((store.artifact_dir(r["run_id"]) / RunArtifacts.PREDICTIONS).read_text())
               for r in (first, second)]
    right = [{i: p == t for i, p, t in zip(a["identities"], a["predicted"], a["true"], strict=True)}
             for a in answers]
    assert paired["only_a_correct"] == sum(right[0][i] and not right[1][i] for i in right[0])
    assert paired["only_b_correct"] == sum(right[1][i] and not right[0][i] for i in right[0])
    assert abs(paired["accuracy"][0]["value"] - first["test"]["accuracy"]) < 1e-9
    assert 0 <= paired["mcnemar_p"] <= 1 and paired["sentence"].endswith(".")

    assert main(["compare", first["run_id"], second["run_id"], "--paired"]) == 0
    text = capsys.readouterr().out
    assert "95 % interval" in text and "fixed" in text

    (store.artifact_dir(second["run_id"]) / RunArtifacts.PREDICTIONS).unlink()  # a run from before
    assert main(["compare", first["run_id"], second["run_id"], "--paired"]) == 2
    assert "kept no per-image test answers" in capsys.readouterr().err
    assert main(["compare", first["run_id"], "--paired"]) == 2
    assert "exactly two runs" in capsys.readouterr().err
