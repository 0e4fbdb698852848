"""``predict RUN IMAGES... --explain DIR``: one overlay PNG per image, named after it and the run."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from specs import TINY_SIZE

from tlcore.cli import main

TINY = ["--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35",
        "--weights", "none", "--image-size", str(TINY_SIZE), "--epochs", "1"]


def test_predict_explain_writes_one_overlay_per_image_at_its_own_size(capsys, tmp_path):
    assert main(["train", *TINY, "--strategy", "frozen", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    first, second = tmp_path / "a" / "my pic!.png", tmp_path / "b" / "my pic!.png"
    for path, shade in ((first, 200), (second, 40)):
        path.parent.mkdir()
        Image.fromarray(np.full((30, 50, 3), shade, np.uint8)).save(path)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    out_dir = tmp_path / "explained"

    code = main(["predict", run_id, str(first), str(second), str(bad), "--explain", str(out_dir), "--json"])
    results = json.loads(capsys.readouterr().out)
    assert code == 2 and "error" in results[2] and "explanation" not in results[2]
    written = [results[0]["explanation"], results[1]["explanation"]]
    assert len(set(written)) == 2, "same names in two folders must not overwrite each other"
    assert sorted(str(p) for p in out_dir.iterdir()) == sorted(written)
    for name in written:
        assert f"-{run_id}-grad-cam.png" in name and " " not in name and "!" not in name
        with Image.open(name) as overlay:
            assert overlay.format == "PNG" and overlay.mode == "RGB" and overlay.size == (50, 30)

    assert main(["predict", run_id, str(first), "--explain", str(out_dir)]) == 0
    text = capsys.readouterr().out
    assert f"explanation: {written[0]}" in text
