"""Compare & Classify's batch view: zips and many images, every run's answers, filters, the CSV.

The two runs are copies of a trained tiny run whose model is swapped for one that reads the
mean colour, so which images they agree on is known: both call red a circle and blue a
triangle, but one calls green a square and the other a triangle.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from apptools import open_app, png_bytes, texts
from imagegen import encode
from PIL import Image
from runfakes import clone_run
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from tlcore.deploy import batch
from tlcore.deploy.serving import load_run
from tlcore.records import RunStatus
from tlcore.runs.store import RunStore
from ui import batch_panel, glue

CLASSES = ["circle", "square", "triangle", "star", "cross"]
BY_COLOUR = [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]
"""Input channel (R, G, B) -> class weights: red circle, green square, blue triangle."""
GREEN_IS_BLUE = [[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]]
COLOURS = {"red": (230, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "lime": (150, 230, 40)}
EXPECTED = {  # image -> (answer of the colour run, answer of the green-is-blue run)
    "colours.zip:colours/red.png": ("circle", "circle"),
    "colours.zip:colours/green.png": ("square", "triangle"),
    "colours.zip:colours/blue.png": ("triangle", "triangle"),
    "colours.zip:colours/lime.png": ("square", "triangle"),
    "extra.png": ("triangle", "triangle"),
}
BROKEN = "colours.zip:colours/broken.png"


def solid(colour: tuple[int, int, int]) -> bytes:
    return encode(Image.new("RGB", (40, 40), colour))


def colour_model(weights: list[list[int]], size: int) -> keras.Model:
    """Softmax of 0.02 x the mean of each channel times ``weights``: a classifier of colours."""
    inputs = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax")(pooled)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([0.02 * np.array(weights, np.float32), np.zeros(len(CLASSES), np.float32)])
    return model


@pytest.fixture
def colour_runs(with_trained_runs, tmp_path, monkeypatch) -> list[str]:
    """Two finished runs (copies of a trained one) that classify by colour, in a writable home."""
    home = tmp_path / "tlhome"
    shutil.copytree(with_trained_runs.root, home)
    monkeypatch.setenv("TL_HOME", str(home))
    store = RunStore()
    ids = []
    for name, weights in (("by colour", BY_COLOUR), ("green is blue", GREEN_IS_BLUE)):
        run = clone_run(store, with_trained_runs.run_ids[0], name, RunStatus.FINISHED)
        store.write_json(run.id, "class_names.json", CLASSES)
        colour_model(weights, run.spec.dataset.image_size).save(store.model_path(run.id))
        ids.append(run.id)
    return ids


@pytest.fixture
def sent_files(monkeypatch) -> dict[str, bytes]:
    """Files the page hands the browser for download, by their download name."""
    sent: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        if filename:
            sent[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return sent


def colours_zip(extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, colour in COLOURS.items():
            archive.writestr(f"colours/{name}.png", solid(colour))
        archive.writestr("colours/broken.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
        archive.writestr("colours/readme.txt", "not an image: skipped, as in a folder")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def compare(ids: list[str]) -> AppTest:
    at = open_app()
    at.query_params["runs"] = ",".join(ids)
    at.switch_page("pages/compare.py").run()
    assert at.multiselect(key="compare.runs").value == ids
    return at


def upload(at: AppTest, files: list[tuple[str, bytes, str]]) -> AppTest:
    at.file_uploader(key="compare.images").set_value(files).run()
    assert not at.exception
    return at


def table(at: AppTest, column: str = "image"):
    [frame] = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def gallery(at: AppTest) -> list[str]:
    """The file names under the batch gallery's thumbnails (the mistakes galleries have no " | ")."""
    return [caption.partition(": ")[0] for image in at.get("image") for caption in image.captions
            if " | " in caption]


def caption_of(image: str) -> str:
    return glue.literal(image.rpartition("/")[2].rpartition(":")[2])


def test_a_zip_is_classified_by_every_run_with_table_gallery_csv_and_bad_files_listed(
        colour_runs, sent_files, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    read: list[tuple[str, bool]] = []

    def image_sources(paths):
        read.extend((path, Path(path).is_file()) for path in paths)
        return batch.image_sources(paths)

    monkeypatch.setattr("ui.batch_panel.image_sources", image_sources)
    at = upload(compare(colour_runs), [("colours.zip", colours_zip(), "application/zip"),
                                       ("extra.png", solid((40, 40, 200)), "image/png")])
    assert not at.error, [e.value for e in at.error]
    [(path, on_disk)] = read
    assert on_disk and Path(path).is_relative_to(tmp_path), "the zip is read from a file on disk"
    assert not Path(path).exists() and not list(tmp_path.glob("tlstudio-batch-*")), "and removed after"
    assert not at.get("plotly_chart")[5:], "no chart per image: this is the batch view"
    frame = table(at)
    first, second = (c for c in frame.columns if c != "image" and not c.endswith(" %") and c != "runs agree")
    assert colour_runs[0] in first and colour_runs[1] in second
    shown = {row["image"]: (row[first], row[second], row["runs agree"]) for _, row in frame.iterrows()}
    assert shown == {image: (*answers, answers[0] == answers[1]) for image, answers in EXPECTED.items()}

    loaded = [load_run(run_id, RunStore()) for run_id in colour_runs]
    pictures = {"red": solid(COLOURS["red"]), "lime": solid(COLOURS["lime"])}
    for name, picture in pictures.items():
        row = frame[frame["image"] == f"colours.zip:colours/{name}.png"].iloc[0]
        for column, run in ((first, loaded[0]), (second, loaded[1])):
            expected = run.classify([picture])[0].predictions[0]
            assert row[column] == expected.label
            assert row[f"{column} %"] == pytest.approx(100 * expected.probability)

    assert sorted(gallery(at)) == sorted(map(caption_of, EXPECTED))
    unreadable = table(at, "reason")
    assert list(unreadable["file"]) == [BROKEN]
    assert "could not be decoded" in unreadable["reason"][0]
    summary = "**5** image(s) classified by 2 run(s); the runs disagree on 2; **1** could not be read."
    assert summary in texts(at)

    rows = list(csv.reader(io.StringIO(sent_files["answers.csv"].decode())))
    assert rows[0] == ["image", "run", "answer", "probability", "top labels", "error"]
    by_image = {(row[0], row[1]): row for row in rows[1:]}
    assert len(rows) == 1 + 2 * (len(EXPECTED) + 1) == 1 + len(by_image), "one row per image and run"
    for image, answers in EXPECTED.items():
        for run_id, answer in zip(colour_runs, answers, strict=True):
            assert by_image[image, run_id][2] == answer and by_image[image, run_id][5] == ""
    for run_id in colour_runs:
        assert by_image[BROKEN, run_id][2] == "" and "could not be decoded" in by_image[BROKEN, run_id][5]


def test_the_filters_pick_disagreements_or_a_class_without_classifying_again(colour_runs, monkeypatch):
    at = upload(compare(colour_runs), [("colours.zip", colours_zip(), "application/zip"),
                                       ("extra.png", solid((40, 40, 200)), "image/png")])
    show = at.selectbox(key=batch_panel.SHOW)
    assert show.value == batch_panel.ALL
    assert show.options[:2] == ["all images (5)", "where the runs disagree (2)"]
    assert "answered “triangle” by a run (4)" in show.options

    monkeypatch.setattr("ui.batch_panel.classify_all", lambda *args: pytest.fail("classified again"))
    at.selectbox(key=batch_panel.SHOW).set_value(batch_panel.DISAGREE).run()
    assert not at.exception and not at.error
    disagreeing = {image for image, (a, b) in EXPECTED.items() if a != b}
    assert set(table(at)["image"]) == disagreeing
    assert not table(at)["runs agree"].any()
    assert sorted(gallery(at)) == sorted(map(caption_of, disagreeing))

    at.selectbox(key=batch_panel.SHOW).set_value(batch_panel.ANSWERED + "circle").run()
    assert list(table(at)["image"]) == ["colours.zip:colours/red.png"]
    assert gallery(at) == [caption_of("colours.zip:colours/red.png")]
    assert list(table(at, "reason")["file"]) == [BROKEN], "the unreadable files stay listed"


def test_a_new_threshold_classifies_again_and_not_sure_is_a_filter_of_its_own(colour_runs):
    at = upload(compare(colour_runs), [("colours.zip", colours_zip(), "application/zip")])
    at.slider(key="compare.threshold").set_value(100).run()
    assert not at.exception and not at.error
    frame = table(at)
    answers = {c for c in frame.columns if c != "image" and not c.endswith(" %") and c != "runs agree"}
    assert all((frame[column] == "not sure").all() for column in answers)
    assert at.selectbox(key=batch_panel.SHOW).options == [
        "all images (4)", "where the runs disagree (0)", "answered “not sure” by a run (4)"]


def test_hostile_archives_are_listed_with_their_reason_and_the_rest_still_classified(colour_runs):
    bomb = zipfile.ZipInfo("colours/bomb.png")
    buffer = io.BytesIO(colours_zip())
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(bomb, bytes(21 * 2**20), zipfile.ZIP_DEFLATED)  # 21 MB of zeros, 20 KB packed
    at = upload(compare(colour_runs), [("bomb.zip", buffer.getvalue(), "application/zip"),
                                       ("fake.zip", b"PK\x03\x04 but nothing else", "application/zip"),
                                       ("notes.png", b"meeting notes, not a photo", "image/png")])
    assert not at.error, [e.value for e in at.error]
    reasons = dict(zip(table(at, "reason")["file"], table(at, "reason")["reason"], strict=True))
    assert set(reasons) == {"bomb.zip:colours/broken.png", "bomb.zip:colours/bomb.png", "fake.zip",
                            "notes.png"}
    assert "inflates to 22,020,096 bytes" in reasons["bomb.zip:colours/bomb.png"]
    assert "zip archive cannot be read" in reasons["fake.zip"]
    assert "not a JPEG, PNG" in reasons["notes.png"]
    assert len(table(at)) == len(COLOURS), "every good image was classified"


def test_a_few_images_stay_side_by_side_until_asked_and_many_go_to_the_batch_at_once(colour_runs):
    few = [(f"{name}.png", solid(colour), "image/png") for name, colour in COLOURS.items()]
    at = upload(compare(colour_runs), few[:2])
    assert at.toggle(key="compare.batch").value is False
    assert len(at.get("plotly_chart")) == 5 + 2, "one answer chart per image"
    at.toggle(key="compare.batch").set_value(True).run()
    assert not at.exception and not at.error
    assert list(table(at)["image"]) == ["red.png", "green.png"]

    many = [(f"square{i:02d}.png", png_bytes((3 * i, 90, 200)), "image/png")
            for i in range(batch_panel.GALLERY_PAGE + 2)]
    at = upload(compare(colour_runs), many)
    assert not [t for t in at.toggle if t.key == "compare.batch"], "no choice to make"
    assert len(table(at)) == len(many), "the table has every image"
    assert gallery(at) == [caption_of(name) for name, _, _ in many[:batch_panel.GALLERY_PAGE]], "capped"
    assert f"The first {batch_panel.GALLERY_PAGE} of {len(many)} are shown" in texts(at)


def test_a_batch_shows_a_progress_bar_that_counts_each_batch_while_classifying_and_goes_after(
        colour_runs, monkeypatch):
    """The bar is drawn before the first image is read, moves as each batch of 32 is answered
    (recorded as the page draws it: AppTest sees only the page after the run), and is removed
    once the table is there."""
    import streamlit
    from streamlit.delta_generator import DeltaGenerator

    drawn: list[tuple[float, str] | str] = []  # every value and text given to a bar, and the work's ends
    new_bar, move_bar, classify = streamlit.progress, DeltaGenerator.progress, batch_panel.classify_uploads

    def drawing(value, text=None, **kwargs):
        drawn.append((value, text))
        return new_bar(value, text=text, **kwargs)

    def moving(self, value, text=None, **kwargs):
        drawn.append((value, text))
        return move_bar(self, value, text=text, **kwargs)

    def classifying(*args, **kwargs):
        drawn.append("start")
        result = classify(*args, **kwargs)
        drawn.append("end")
        return result

    monkeypatch.setattr(streamlit, "progress", drawing)
    monkeypatch.setattr(DeltaGenerator, "progress", moving)
    monkeypatch.setattr("ui.batch_panel.classify_uploads", classifying)
    count = 2 * batch_panel.BATCH + 6
    images = [(f"shade{i:02d}.png", png_bytes((2 * i, 90, 200)), "image/png") for i in range(count)]
    at = upload(compare(colour_runs), images)
    assert not at.error, [e.value for e in at.error]
    assert drawn == [(0.0, f"Classifying about {count} image(s)…"), "start",
                     *[(done / count, f"Classified {done} of about {count} image(s)…")
                       for done in (batch_panel.BATCH, 2 * batch_panel.BATCH)], "end"]
    assert not at.get("progress"), "the bar is gone once the answers are shown"
    assert len(table(at)) == count
