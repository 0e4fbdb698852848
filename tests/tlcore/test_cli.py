import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from specs import TINY_SIZE

from tlcore.cli import main

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
    assert json.loads(out)["history"] == payload["history"]

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
        (["train", *TINY[:2], "--backbone", "no_such_net", "--strategy", "frozen", "--epochs", "1"], "no_such_net"),
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
