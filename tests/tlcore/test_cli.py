import csv
import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from specs import TINY_SIZE

from tlcore.cli import build_parser, main, spec_from_args
from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec, settings
from tlcore.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35",
        "--weights", "none", "--image-size", str(TINY_SIZE), "--epochs", "1"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_json_then_reuse_show_predict(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", *TINY, "--strategy", "frozen", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["cached"] is False and payload["status"] == "finished"
    assert len(payload["history"]) == 1
    assert set(payload["test"]) >= {"accuracy", "per_class", "confusion"}
    n = len(payload["class_names"])
    assert np.array(payload["test"]["confusion"]).shape == (n, n)

    code, out, _ = run_cli(capsys, "train", *TINY, "--strategy", "frozen", "--json")
    again = json.loads(out)
    assert again["cached"] is True and again["run_id"] == payload["run_id"]

    code, out, _ = run_cli(capsys, "show", payload["run_id"], "--json")
    shown = json.loads(out)
    assert shown["history"] == payload["history"]
    confusion = np.array(payload["test"]["confusion"])
    wrong = int(confusion.sum() - np.trace(confusion))
    assert len(shown["mistakes"]) == min(wrong, 12)  # the report keeps the 12 most confident
    for mistake in shown["mistakes"]:
        assert mistake["true"] != mistake["predicted"]
        assert {mistake["true"], mistake["predicted"]} <= set(payload["class_names"])
    confidences = [mistake["confidence"] for mistake in shown["mistakes"]]
    assert confidences == sorted(confidences, reverse=True)

    image = tmp_path / "pic.png"
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(image)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    code, out, _ = run_cli(capsys, "predict", payload["run_id"], str(image), "--top-k", "2", "--json")
    assert code == 0
    preds = json.loads(out)[0]["predictions"]
    assert len(preds) == 2 and preds[0]["label"] in payload["class_names"]
    assert preds[0]["probability"] >= preds[1]["probability"]
    code, out, _ = run_cli(capsys, "predict", payload["run_id"], str(bad), "--json")
    assert code == 2 and "error" in json.loads(out)[0]

    code, out, _ = run_cli(capsys, "runs", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [payload["run_id"]]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", *TINY[:2], "--backbone", "no_such_net", "--strategy", "frozen", "--epochs", "1"],
         "no_such_net"),
        (["train", "--dataset", "folder:/definitely/missing", *TINY[2:], "--strategy", "frozen"], "missing"),
        (["train", *TINY, "--strategy", "frozen", "--image-size", "0"], "Image size"),
        (["show", "nope"], "nope"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, needle):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error:") and needle in err
    assert "Traceback" not in err


def test_module_entry_point_and_catalogue_listing():
    result = subprocess.run([sys.executable, "-m", "tlcore", "backbones", "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in json.loads(result.stdout)}
    assert {"mobilenet_v2", "resnet50", "efficientnet_b0"} <= names and len(names) >= 10


def finished_run(store, learning_rate: float, test_accuracy: float) -> str:
    spec = RunSpec(name=f"lr {learning_rate:g}",
                   train=TrainSpec(strategy="frozen", learning_rate=learning_rate))
    run, _ = store.create_run(spec)
    store.update(run.id, summary={"test_accuracy": test_accuracy, "macro_f1": test_accuracy - 0.01,
                                  "best_val_accuracy": 0.7, "train_seconds": 3.5,
                                  "trainable_params": 6405, "epochs": 2})
    store.finish(run.id, "finished")
    return run.id


def test_compare_prints_the_apps_metrics_table_as_text_json_and_csv(capsys):
    store = RunStore()
    first, second = finished_run(store, 1e-3, 0.8), finished_run(store, 3e-3, 0.945)

    code, out, _ = run_cli(capsys, "compare", first, second, "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["test accuracy"] for r in rows] == [0.8, 0.945]
    assert rows[0]["run"].startswith("lr 0.001 · ") and rows[0]["run"].endswith(first)

    code, out, _ = run_cli(capsys, "compare", first, second, "--csv")
    assert code == 0
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [r["test accuracy"] for r in parsed] == ["0.8", "0.945"]
    assert parsed[1]["trainable params"] == "6405"

    code, out, _ = run_cli(capsys, "compare", first, second)
    header, *lines = out.strip().splitlines()
    assert "test accuracy" in header and "macro F1" in header
    assert len(lines) == 2 and second in lines[1] and "94.5%" in lines[1]


def test_compare_refuses_unfinished_and_unknown_runs_with_one_line(capsys):
    store = RunStore()
    done = finished_run(store, 1e-3, 0.8)
    queued, _ = store.create_run(RunSpec(train=TrainSpec(strategy="finetune")))

    code, out, err = run_cli(capsys, "compare", done, queued.id)
    assert code == 2 and out == ""
    assert err.startswith("error:") and f"{queued.id} is queued" in err and err.count("\n") == 1

    code, _, err = run_cli(capsys, "compare", done, "nosuchrun")
    assert code == 2 and "nosuchrun" in err


SPECS = {"dataset": DatasetSpec, "backbone": BackboneSpec, "train": TrainSpec}
SPEC_VERBS = ("train", "submit", "classic")


def expected_flag(section: str, name: str) -> str:
    """``--image-size`` for ``image_size``; a field named like a RunSpec part gets its section."""
    clashes = name in {f.name for f in dataclasses.fields(RunSpec)}
    return "--" + (f"{section}-{name}" if clashes else name).replace("_", "-")


def verb_help(capsys, verb: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main([verb, "--help"])
    assert stopped.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("verb", SPEC_VERBS)
def test_every_spec_field_has_a_flag_named_after_it(capsys, verb):
    shown = verb_help(capsys, verb)
    for section, spec_class in SPECS.items():
        for f in dataclasses.fields(spec_class):
            if verb == "classic" and f.name == "strategy":
                continue  # the classic experiment runs all three strategies itself
            flag = expected_flag(section, f.name)
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", shown), f"{verb} has no {flag}"
            if f.type == "bool":
                assert f"--no-{flag[2:]}" in shown


def parse(*flags: str):
    return spec_from_args(build_parser().parse_args(["train", *TINY, "--strategy", "finetune", *flags]))


def test_flags_reach_the_spec_fields_they_are_named_after():
    spec = parse("--early-stopping-patience", "3", "--augment-views", "2", "--no-feature-cache",
                 "--fine-tune-learning-rate", "3e-5", "--augmentations", "flip,zoom", "--augmentations",
                 "contrast", "--class-weights", "--fine-tune-layers", "5", "--optimizer", "sgd",
                 "--val-fraction", "0.2", "--data-dir", "/tmp/tfds", "--seed", "7", "--backbone-name",
                 "mobilenet_v2", "--source", "builtin:shapes", "--learning-rate", "0.01")
    t = spec.train
    assert (t.early_stopping_patience, t.augment_views, t.feature_cache) == (3, 2, False)
    assert t.fine_tune_learning_rate == 3e-5 and t.learning_rate == 0.01
    assert t.augmentations == ("flip", "zoom", "contrast") and t.class_weights
    assert (t.fine_tune_layers, t.optimizer, t.seed) == (5, "sgd", 7)
    assert spec.dataset.val_fraction == 0.2 and spec.dataset.data_dir == "/tmp/tfds"
    assert spec.dataset.seed == 7 and spec.dataset.image_size == TINY_SIZE
    assert spec.backbone == BackboneSpec(name="mobilenet_v2", alpha=0.35, weights="none")


def test_documented_short_flags_set_the_same_fields_and_omitted_flags_keep_spec_defaults():
    short = parse("--lr", "0.01", "--fine-tune-lr", "3e-5", "--patience", "3", "--augment", "flip,zoom")
    long = parse("--learning-rate", "0.01", "--fine-tune-learning-rate", "3e-5",
                 "--early-stopping-patience", "3", "--augmentations", "flip", "--augmentations", "zoom")
    assert short == long
    defaults = TrainSpec()
    assert parse().train == dataclasses.replace(defaults, strategy="finetune", epochs=1)
    assert parse().dataset.subset == DatasetSpec().subset


def outside(bound) -> list[str]:
    """Values just past each limit of ``bound``, as typed on the command line."""
    values = []
    if bound.low is not None:
        values.append(bound.low if bound.low_open else bound.low - 1)
    if bound.high is not None:
        values.append(bound.high if bound.high_open else bound.high + 1)
    return [str(int(v)) if float(v).is_integer() else str(v) for v in values]


BOUNDED_FLAGS = sorted({
    (expected_flag(section, name), f"{info.label} must be {info.bound.describe()}", value)
    for section, spec_class in SPECS.items()
    for name, info in settings(spec_class).items() if info.bound is not None
    for value in outside(info.bound)
})


@pytest.mark.parametrize("flag, refusal, value", BOUNDED_FLAGS)
def test_a_value_outside_its_bound_is_refused_with_one_line_and_code_2(capsys, flag, refusal, value):
    code, out, err = run_cli(capsys, "submit", *TINY, "--strategy", "frozen", flag, value)
    assert code == 2 and out == ""
    assert err.startswith(f"error: argument {flag}") and refusal in err and err.count("\n") == 1
    assert "Traceback" not in err and "usage:" not in err
    assert RunStore().list_runs() == []


@pytest.mark.parametrize("args, needle", [
    (["--strategy", "magic"], "Unknown strategy: magic"),
    (["--strategy", "frozen", "--augment", "flip,blur"], "Unknown augmentation: blur"),
    (["--strategy", "frozen", "--epochs", "two"], "Epochs must be a whole number"),
    (["--strategy", "frozen", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_mistyped_flags_are_one_line_user_errors(capsys, args, needle):
    code, _, err = run_cli(capsys, "train", *TINY, *args)
    assert code == 2 and needle in err and err.count("\n") == 1 and err.startswith("error:")
