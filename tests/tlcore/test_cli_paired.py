"""`compare A B --paired`: two real runs paired image by image, from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlcore.cli import main
from tlcore.records import RunArtifacts
from tlcore.report.paired import bootstrap_accuracy
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

    right_b_in_a_order = np.array([right[1][i] for i in answers[0]["identities"]])
    for interval, correct, seed in ((paired["accuracy"][0], list(right[0].values()), 0),
                                    (paired["accuracy"][1], right_b_in_a_order, 1)):
        assert interval["low"] <= interval["value"] <= interval["high"]
        expected = bootstrap_accuracy(np.array(correct), seed)  # as compare_paired draws them
        assert (interval["low"], interval["high"]) == pytest.approx((expected.low, expected.high))
    assert len(paired["per_class"]) == len(answers[0]["class_names"])
    for row in paired["per_class"]:
        for metric in ("precision", "recall", "f1"):
            assert row[f"{metric}_delta"] == pytest.approx(row[metric][1] - row[metric][0])

    assert main(["compare", first["run_id"], second["run_id"], "--paired"]) == 0
    text = capsys.readouterr().out
    assert "95 % interval" in text and "fixed" in text
    assert all(column in text for column in ("P A", "P B-A", "R A", "R B-A", "F1 B-A"))
    assert "\\u000a" not in text and len(text.splitlines()) >= 5 + len(paired["per_class"]), text

    (store.artifact_dir(second["run_id"]) / RunArtifacts.PREDICTIONS).unlink()  # a run from before
    assert main(["compare", first["run_id"], second["run_id"], "--paired"]) == 2
    assert "kept no per-image test answers" in capsys.readouterr().err
    assert main(["compare", first["run_id"], "--paired"]) == 2
    assert "exactly two runs" in capsys.readouterr().err


def test_stored_test_answers_agree_with_the_runs_report(capsys) -> None:
    run_id = train(capsys, "--strategy", "frozen")["run_id"]
    store = RunStore()
    stored = store.read_json(run_id, RunArtifacts.PREDICTIONS)
    report = store.read_json(run_id, RunArtifacts.REPORT)
    predicted, true, top_k = stored["predicted"], stored["true"], stored["top_k"]
    assert len(predicted) == len(true) == len(top_k) == len(stored["probability"]) == len(stored["ids"])
    assert all(len(top) == report["top_k"] and len(set(top)) == len(top) for top in top_k)
    assert all(top[0] == p for top, p in zip(top_k, predicted, strict=True)), "the most likely first"
    assert all(1 / len(stored["class_names"]) <= p <= 1 for p in stored["probability"]), "the argmax's"
    assert np.mean(np.equal(predicted, true)) == pytest.approx(report["accuracy"])
    assert np.mean([t in top for t, top in zip(true, top_k, strict=True)]) == pytest.approx(
        report["top_k_accuracy"])
    at = {image_id: i for i, image_id in enumerate(stored["ids"])}
    names = stored["class_names"]
    assert report["mistakes"], "a tiny run makes mistakes"
    for mistake in report["mistakes"]:
        i = at[mistake["id"]]
        assert (names[true[i]], names[predicted[i]]) == (mistake["true"], mistake["predicted"])
        assert stored["probability"][i] == pytest.approx(mistake["confidence"], abs=1e-6)
