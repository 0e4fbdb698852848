"""``experiments list|show|save|delete`` and ``train --estimate`` from the command line."""

import json

from specs import TINY_SIZE

from tlcore.cli import main
from tlcore.runs.experiments import load_experiment
from tlcore.runs.store import RunStore

FLAGS = ["--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", "none",
         "--image-size", str(TINY_SIZE), "--strategy", "frozen", "--epochs", "3", "--schedule", "cosine"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_experiments_are_saved_listed_shown_and_deleted(capsys):
    code, out, _ = run_cli(capsys, "experiments", "save", "shapes cosine", *FLAGS, "--json")
    assert code == 0 and json.loads(out)["name"] == "shapes cosine"
    saved = load_experiment("shapes cosine")
    assert saved.train.schedule == "cosine" and saved.train.epochs == 3
    run_cli(capsys, "experiments", "save", "second", *FLAGS[:-2])
    code, out, _ = run_cli(capsys, "experiments", "list", "--json")
    assert [row["name"] for row in json.loads(out)] == ["second", "shapes cosine"]  # newest first
    code, out, _ = run_cli(capsys, "experiments", "show", "shapes cosine", "--json")
    shown = json.loads(out)
    assert shown["key"] == saved.key() and shown["spec"]["train"]["schedule"] == "cosine"
    code, out, _ = run_cli(capsys, "experiments", "show", "shapes cosine")
    assert "schedule=cosine" in out
    assert run_cli(capsys, "experiments", "delete", "second")[0] == 0
    code, out, _ = run_cli(capsys, "experiments", "list")
    assert "second" not in out and "shapes cosine" in out


def test_unknown_or_impossible_experiments_are_one_line_errors(capsys):
    for args in (["experiments", "show", "nope"], ["experiments", "delete", "nope"],
                 ["experiments", "save", "   ", *FLAGS],
                 ["experiments", "save", "x", *FLAGS, "--epochs", "0"]):
        code, out, err = run_cli(capsys, *args)
        assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1, args


def test_train_estimate_prints_the_estimate_and_trains_nothing(capsys):
    code, out, _ = run_cli(capsys, "train", *FLAGS, "--estimate", "--json")
    estimate = json.loads(out)
    assert code == 0 and estimate["epochs"] == 3 and estimate["train_images"] > 0
    assert 0 < estimate["epoch_seconds"] <= estimate["run_seconds"]
    assert RunStore().list_runs() == []
    code, out, _ = run_cli(capsys, "train", *FLAGS, "--estimate")
    assert out.startswith("Estimate: about") and "training images" in out


def test_backbones_lists_keras_hub_presets_with_what_needs_a_download(capsys):
    from tlcore.backbones.catalogue import KERAS_HUB_PRESETS

    code, out, _ = run_cli(capsys, "backbones", "--kerashub", "--json")
    rows = json.loads(out)
    assert code == 0 and {row["name"] for row in rows} == {f"kerashub:{name}" for name in KERAS_HUB_PRESETS}
    assert all(isinstance(row["on_disk"], bool) and row["download"] for row in rows)
