"""``predict RUN[,RUN] PATHS... --explain DIR``: one overlay PNG per image and run, named after both."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from archives import make_zip
from imagegen import encode, random_pixels
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


def test_zip_members_and_folders_are_explained_by_every_run_with_json_and_csv(capsys, tmp_path):
    run_ids = []
    for lr in ("0.001", "0.01"):
        assert main(["train", *TINY, "--strategy", "frozen", "--lr", lr, "--json"]) == 0
        run_ids.append(json.loads(capsys.readouterr().out)["run_id"])
    inputs, photos = tmp_path / "in", tmp_path / "in" / "photos"
    photos.mkdir(parents=True)
    (photos / "cat.png").write_bytes(encode(random_pixels(1, 20, 36)))
    archive = make_zip(inputs / "more.zip", {"a/zipped.png": encode(random_pixels(2, 28, 18)),
                                               "b/zipped.png": encode(random_pixels(3, 16, 16))})
    sizes = {"cat": (36, 20), "more.zip:a/zipped": (18, 28), "more.zip:b/zipped": (16, 16)}
    out_dir = tmp_path / "explained"

    both = ",".join(run_ids)
    code = main(["predict", both, str(photos), str(archive), "--explain", str(out_dir), "--json"])
    results = json.loads(capsys.readouterr().out)
    assert code == 0 and not [r for r in results if "error" in r], results
    assert len(results) == 6 and {r["run"] for r in results} == set(run_ids)  # 3 images x 2 runs
    written = sorted(r["explanation"] for r in results)
    assert sorted(str(p) for p in out_dir.iterdir()) == written and len(set(written)) == 6
    for r in results:
        assert f"-{r['run']}-grad-cam.png" in r["explanation"]
        [size] = [size for key, size in sizes.items() if r["image"].endswith(key + ".png")]
        with Image.open(r["explanation"]) as overlay:
            assert overlay.size == size, "drawn over the zip member itself, at its own size"
    assert sorted(p.name for p in inputs.rglob("*")) == ["cat.png", "more.zip", "photos"], "nothing extracted"

    csv_dir = tmp_path / "as-csv"
    code = main(["predict", both, str(archive), "--explain", str(csv_dir), "--csv"])
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert code == 0 and rows[0] == ["image", "run", "answer", "probability", "top labels", "error",
                                      "explanation"]
    assert len(rows) == 5 and all(row[5] == "" and Path(row[6]).is_file() for row in rows[1:])
    assert sorted(str(p) for p in csv_dir.iterdir()) == sorted(row[6] for row in rows[1:])


def test_an_explanation_folder_that_cannot_be_made_is_one_error(capsys, tmp_path):
    assert main(["train", *TINY, "--strategy", "frozen", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    image = tmp_path / "x.png"
    image.write_bytes(encode(random_pixels(4, 20, 20)))
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert main(["predict", run_id, str(image), "--explain", str(blocker / "sub"), "--csv"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Could not create the explanation folder" in captured.err
