"""Classifying folders and zips with several runs: every image answered, in order, bad ones explained."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from imagegen import encode, random_pixels

from tlcore.cli import main
from tlcore.deploy import batch

TINY = ["--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35",
        "--weights", "none", "--image-size", "32", "--epochs", "1", "--json"]


@pytest.fixture
def two_runs(capsys) -> list[str]:
    ids = []
    for lr in ("0.001", "0.01"):
        assert main(["train", *TINY, "--strategy", "frozen", "--lr", lr]) == 0
        ids.append(json.loads(capsys.readouterr().out)["run_id"])
    return ids


def write_inputs(tmp_path) -> list[str]:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        (folder / f"p{i}.png").write_bytes(encode(random_pixels(i, 20, 20)))
    (folder / "sub" / "deep.png").write_bytes(encode(random_pixels(9, 20, 20)))
    (folder / "notes.txt").write_text("not an image")  # not an image name: left out
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/z1.png", encode(random_pixels(11, 20, 20)))
        zf.writestr("../escape.png", encode(random_pixels(12, 20, 20)))  # read, never written anywhere
        zf.writestr("readme.md", "hello")
    return [str(folder), str(archive), str(tmp_path / "missing.png")]


def test_folders_and_zips_are_classified_by_every_run_as_csv(two_runs, tmp_path, capsys) -> None:
    paths = write_inputs(tmp_path)
    code = main(["predict", ",".join(two_runs), *paths, "--csv"])
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert code == 2  # some files could not be read, the others were answered
    header, body = rows[0], rows[1:]
    assert header == ["image", "run", "answer", "probability", "top labels", "error"]
    images = {row[0] for row in body}
    assert len(images) == 8 and len(body) == 16  # 8 images x 2 runs
    assert {row[1] for row in body} == set(two_runs)
    errors = {row[0]: row[5] for row in body if row[5]}
    assert set(errors) == {str(tmp_path / "photos" / "broken.png"), str(tmp_path / "missing.png")}
    answered = [row for row in body if not row[5]]
    assert all(row[2] and 0 < float(row[3]) <= 1 for row in answered)
    assert any(row[0].endswith("more.zip:a/z1.png") for row in answered)


def test_one_run_keeps_the_order_and_the_json_shape(two_runs, tmp_path, capsys) -> None:
    good = tmp_path / "g.png"
    good.write_bytes(encode(random_pixels(1, 20, 20)))
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    assert main(["predict", two_runs[0], str(bad), str(good), "--json"]) == 2
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [str(bad), str(good)]
    assert "error" in results[0] and "run" not in results[1] and results[1]["predictions"]


@pytest.mark.slow
def test_ten_thousand_images_stream_in_batches(two_runs, tmp_path, capsys, monkeypatch) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    data = encode(random_pixels(5, 16, 16))
    for i in range(10_000):
        (folder / f"{i:05d}.png").write_bytes(data)
    seen = []
    real = batch._answer_batch
    monkeypatch.setattr(batch, "_answer_batch",
                        lambda run, images, *rest: seen.append(len(images)) or real(run, images, *rest))
    assert main(["predict", two_runs[0], str(folder), "--csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10_001
    assert max(seen) == batch.BATCH and sum(seen) == 10_000


def test_a_damaged_zip_is_one_answer_with_its_reason(tmp_path) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    [item] = list(batch.image_sources([str(path)]))
    assert isinstance(item, batch.BatchAnswer) and "cannot be read" in item.error
