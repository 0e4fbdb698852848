"""``lr-find`` and ``search``: tables for people, everything in JSON, the best setting saved as an
experiment, and bad input refused with one line and exit code 2."""

from __future__ import annotations

import json

import pytest

from tlcore.cli import main
from tlcore.runs.experiments import list_experiments, load_experiment

TINY = ["--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", "none",
        "--image-size", "48", "--strategy", "frozen", "--epochs", "2"]


def test_lr_find_prints_a_compact_curve_and_the_suggestion(capsys):
    assert main(["lr-find", *TINY, "--steps", "30"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    table = [line for line in out if line.strip()[:1].isdigit()]
    assert 10 <= len(table) <= 17 and sum("<- suggested" in line for line in table) == 1
    assert any(line.startswith("suggested learning rate ") for line in out)
    assert any("steps on cached features" in line for line in out)


def test_lr_find_json_has_the_whole_curve(capsys):
    assert main(["lr-find", *TINY, "--steps", "20", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["on_features"] and payload["applies_to"] == "learning_rate"
    assert 1 <= len(payload["rates"]) == len(payload["losses"]) == len(payload["smoothed"]) <= 20
    assert payload["rates"][0] == pytest.approx(1e-7) and payload["rule"]
    assert payload["min_over_ten"] > 0 and payload["suggestion"] > 0


def test_search_saves_the_best_setting_under_a_default_name(capsys):
    assert main(["search", *TINY, "--budget-seconds", "60", "--trials", "2", "--json"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    trials, best = payload["search"]["trials"], payload["search"]["best"]
    assert len(trials) == 2 and captured.err.count("trial ") >= 2
    assert payload["experiment"] == "head search · mobilenet_v2 · shapes" == list_experiments()[0]
    saved = load_experiment(payload["experiment"])
    assert json.loads(json.dumps(saved.to_dict())) == payload["spec"] and saved.train.strategy == "frozen"
    assert saved.train.learning_rate == best["params"]["learning_rate"]
    assert saved.train.head_hidden_units == best["params"]["head_hidden_units"]
    assert saved.train.search_budget_seconds == 60


def test_search_prints_the_trials_and_saves_under_the_name_given(capsys):
    assert main(["search", *TINY, "--trials", "1", "--save-as", "my heads"]) == 0
    out = capsys.readouterr().out
    assert "<- best" in out and "saved as the experiment 'my heads'" in out
    assert load_experiment("my heads").name == "my heads"


@pytest.mark.parametrize("argv, words", [
    (["search", *TINY, "--budget-seconds", "1"], "Search budget must be between 5 and 3600"),
    (["search", *TINY, "--trials", "0"], "at least 1"),
    (["lr-find", *TINY, "--steps", "5"], "at least 10 steps"),
    (["lr-find", *TINY[:-4], "--strategy", "frozen_then_finetune", "--epochs", "1"], "fine-tune epoch"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]
