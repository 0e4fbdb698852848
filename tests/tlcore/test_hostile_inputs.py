"""Hostile input the other core tests do not already cover.

test_images.py, test_archive.py, test_data.py, test_backbones.py and test_config.py cover the
classic cases (corrupt and truncated images, bombs, odd modes, EXIF, path escapes, links,
zip bombs, tiny classes, roots, TFDS names, foreign weights, impossible settings). Here: what a
careful reviewer tries next, and the saved-model and run-id side of a shared server.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from archives import dataset_entries, make_zip
from imagegen import encode, random_pixels
from specs import tiny_spec

from tlcore.cli import main
from tlcore.config import BackboneSpec, DatasetSpec
from tlcore.data import load_dataset
from tlcore.data.archive import MAX_ARCHIVE_FILES, safe_extract
from tlcore.deploy.serving import load_run
from tlcore.errors import (
    ArtifactError,
    BackboneError,
    BadImageError,
    ConfigError,
    DatasetError,
    RunNotFoundError,
    RunStateError,
    UploadError,
)
from tlcore.images import load_image
from tlcore.report.evaluate import predict
from tlcore.runs import jobs
from tlcore.runs.store import RunStore

# --- images -------------------------------------------------------------------------------

SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
PNG_SIGNATURE_THEN_HTML = b"\x89PNG\r\n\x1a\n" + HTML


@pytest.mark.parametrize("data", [SVG, HTML, PNG_SIGNATURE_THEN_HTML],
                         ids=["svg", "html", "png-signature-then-html"])
def test_markup_disguised_as_png_is_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(BadImageError) as caught:
            load_image(source)
        assert caught.value.hint


def test_one_pixel_image_is_decoded_resized_and_classified() -> None:
    data = encode(np.full((1, 1, 3), 200, np.uint8), "PNG")
    assert load_image(data).shape == (1, 1, 3)
    assert (load_image(data, size=16) == 200).all()
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    [predictions] = predict(keras.Model(inputs, outputs), ["a", "b"], [data], 16, top_k=2)
    assert [p.label for p in predictions] in (["a", "b"], ["b", "a"])


def test_a_very_thin_image_is_accepted() -> None:
    assert load_image(encode(np.zeros((1, 100_000, 3), np.uint8), "PNG"), size=16).shape == (16, 16, 3)


# --- zip archives -------------------------------------------------------------------------

def test_a_huge_number_of_tiny_files_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(MAX_ARCHIVE_FILES + 1):
            archive.writestr(f"a/{i}.png", b"")
    dest = tmp_path / "out" / "extracted"
    with pytest.raises(UploadError, match=f"at most {MAX_ARCHIVE_FILES}"):
        safe_extract(path, dest)
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("name", ["\\\\server\\share\\evil.png", "C:\\evil.png", "daisy\\..\\..\\evil.png"])
def test_windows_style_escapes_are_refused(tmp_path: Path, name: str) -> None:
    path = make_zip(tmp_path / "evil.zip", {**dataset_entries(), name: b"x"})
    with pytest.raises(UploadError, match="unsafe path"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "evil.png").exists()


def test_a_zip_made_on_windows_with_backslashes_loads(tmp_path: Path) -> None:
    entries = {name.replace("/", "\\"): data for name, data in dataset_entries("flowers/").items()}
    bundle = load_dataset(DatasetSpec(source=f"zip:{make_zip(tmp_path / 'w.zip', entries)}",
                                      image_size=16))
    assert bundle.class_names == ["daisy", "rose"]


def _rename_member(data: bytes, old: str, new: bytes) -> bytes:
    """Replace a member name in the local and central headers (same length, so offsets hold)."""
    assert len(old.encode()) == len(new)
    return data.replace(old.encode(), new)


def test_legacy_encoded_names_in_a_zip_load_with_printable_names(tmp_path: Path) -> None:
    # Without the UTF-8 flag, names are read as cp437, whatever bytes they hold.
    data = make_zip(tmp_path / "src.zip", dataset_entries()).read_bytes()
    data = _rename_member(_rename_member(data, "daisy", b"d\xe4isy"), "img0", b"im\xe90")
    path = tmp_path / "legacy.zip"
    path.write_bytes(data)
    bundle = load_dataset(DatasetSpec(source=f"zip:{path}", image_size=16))
    assert len(bundle.class_names) == 2 and bundle.class_names[1] == "rose"
    for name in bundle.class_names + bundle.train.ids + bundle.val.ids + bundle.test.ids:
        name.encode("utf-8")


def test_invalid_utf8_names_flagged_as_utf8_are_an_upload_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in dataset_entries().items():
            archive.writestr(name.replace("daisy", "daisé"), data)  # é sets the UTF-8 flag
    path = tmp_path / "bad-names.zip"
    path.write_bytes(buffer.getvalue().replace("daisé".encode(), b"dai\xff\xfe\xfd"))  # 6 bytes too
    with pytest.raises(UploadError):
        load_dataset(DatasetSpec(source=f"zip:{path}", image_size=16))


# --- paths typed by a user ----------------------------------------------------------------

@pytest.mark.parametrize("source", ["folder:/tmp/a\x00b", "zip:/tmp/a\x00b.zip"])
def test_a_path_with_a_nul_byte_is_a_dataset_error(source: str) -> None:
    with pytest.raises(DatasetError):
        load_dataset(DatasetSpec(source=source, image_size=16))


@pytest.mark.parametrize("name", ["../../etc", "mnist/../../x", "a\x00b"])
def test_tfds_names_with_path_characters_are_unknown_datasets(name: str) -> None:
    with pytest.raises(DatasetError, match="no dataset called"):
        load_dataset(DatasetSpec(source=f"tfds:{name}", image_size=16))


@pytest.mark.parametrize("run_id", ["../../victim", "/etc", "..", "a/b", "a\x00b", "x" * 65, ""])
def test_run_ids_with_path_characters_are_unknown_runs(isolated_home: Path, run_id: str) -> None:
    store = RunStore()
    victim = isolated_home.parent / "victim"
    victim.mkdir()
    with pytest.raises(RunNotFoundError) as caught:
        store.get(run_id)
    assert caught.value.hint
    with pytest.raises(RunNotFoundError):
        store.artifact_dir(run_id)
    with pytest.raises(RunNotFoundError):
        load_run(run_id, store)
    assert victim.is_dir()


@pytest.mark.parametrize("verb", ["show", "delete", "resume", "cancel", "predict"])
def test_cli_refuses_run_ids_with_path_characters(capsys, isolated_home: Path, verb: str) -> None:
    victim = isolated_home.parent / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    args = [verb, "../../victim"] + (["x.png"] if verb == "predict" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No run with id") and "Traceback" not in err
    assert (victim / "keep.txt").exists()


# --- impossible settings reach nothing ----------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--epochs", "-1"], "Epochs"),
    (["--subset", "0"], "Subset"),
    (["--batch-size", "0"], "Batch size"),
])
def test_cli_submit_refuses_impossible_settings_and_queues_nothing(capsys, args, needle) -> None:
    base = ["submit", "--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35",
            "--weights", "none", "--strategy", "frozen", "--epochs", "1", "--image-size", "48"]
    assert main(base + args) == 2
    assert needle in capsys.readouterr().err
    assert RunStore().list_runs() == []


def test_submit_refuses_an_impossible_spec_before_queueing() -> None:
    bad = dataclasses.replace(tiny_spec(), dataset=DatasetSpec(source="builtin:shapes", image_size=0))
    with pytest.raises(ConfigError, match="Image size"):
        jobs.submit(bad)
    assert RunStore().list_runs() == []


def test_a_weights_file_for_another_architecture_fails_the_run_with_the_reason(tmp_path: Path) -> None:
    from tlcore.backbones import build_backbone
    from tlcore.runs.runner import execute_run

    path = tmp_path / "v1.weights.h5"
    build_backbone(BackboneSpec("mobilenet", 0.25, "none"), 48).model.save_weights(path)
    spec = dataclasses.replace(tiny_spec(), backbone=BackboneSpec("mobilenet_v2", 0.35, str(path)))
    store = RunStore()
    run, _ = store.create_run(spec)
    jobs.claim_for_this_process(store, run.id)
    with pytest.raises(BackboneError):
        execute_run(store, run.id, reraise_user_errors=True)
    failed = store.get(run.id)
    assert failed.status == "failed" and "does not hold weights for MobileNetV2" in failed.error
    assert not store.model_path(run.id).exists()


# --- saved models: safe mode only ---------------------------------------------------------

def finished_run_with_model(store: RunStore, model: keras.Model, classes: list[str]) -> str:
    """A run marked finished whose artifact folder holds ``model`` (as if a file was swapped)."""
    run, _ = store.create_run(tiny_spec())
    store.artifact_dir(run.id).mkdir(parents=True)
    model.save(store.model_path(run.id))
    store.write_json(run.id, "class_names.json", classes)
    store.finish(run.id, "finished")
    return run.id


def test_a_lambda_model_in_a_run_folder_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    # Self-contained, as an attacker's would be: the bytecode alone writes the marker.
    payload = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]")
    inputs = keras.Input((16, 16, 3))
    hidden = keras.layers.Lambda(payload)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(hidden))
    store = RunStore()
    run_id = finished_run_with_model(store, keras.Model(inputs, outputs), ["a", "b"])
    marker.unlink()  # building the model ran the function once

    with pytest.raises(ArtifactError, match="Lambda layer") as caught:
        load_run(run_id, store)
    assert "safe mode" in caught.value.hint
    assert not marker.exists()
    image = tmp_path / "x.png"
    image.write_bytes(encode(random_pixels(0)))
    assert main(["predict", run_id, str(image)]) == 2
    assert not marker.exists()

    # The file really is dangerous: unsafe loading would have run the code.
    keras.saving.load_model(store.model_path(run_id), safe_mode=False)
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "text", "empty"])
def test_a_damaged_model_file_is_an_artifact_error(damage: str) -> None:
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    store = RunStore()
    run_id = finished_run_with_model(store, keras.Model(inputs, outputs), ["a", "b"])
    path = store.model_path(run_id)
    path.write_bytes({"truncated": path.read_bytes()[:300], "text": b"hello", "empty": b""}[damage])
    with pytest.raises(ArtifactError, match="could not be loaded"):
        load_run(run_id, store)


def test_damaged_or_mismatched_class_names_are_an_artifact_error() -> None:
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    store = RunStore()
    run_id = finished_run_with_model(store, keras.Model(inputs, outputs), ["a", "b", "c"])
    with pytest.raises(ArtifactError, match="do not match"):
        load_run(run_id, store)
    (store.artifact_dir(run_id) / "class_names.json").write_bytes(b"\xff{not json")
    with pytest.raises(ArtifactError, match="damaged"):
        load_run(run_id, store)


def test_predicting_with_a_run_that_is_still_running_is_refused(capsys, tmp_path: Path) -> None:
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    jobs.claim_for_this_process(store, run.id)
    with pytest.raises(RunStateError, match="running") as caught:
        load_run(run.id, store)
    assert "Wait until it finishes" in caught.value.hint
    image = tmp_path / "x.png"
    image.write_bytes(encode(random_pixels(0)))
    assert main(["predict", run.id, str(image)]) == 2
    assert "is running" in capsys.readouterr().err
    store.finish(run.id, "failed", "test over")
    with pytest.raises(RunStateError, match="failed"):
        load_run(run.id, store)


def test_a_run_folder_report_that_is_not_json_is_an_artifact_error() -> None:
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    store.artifact_dir(run.id).mkdir(parents=True)
    (store.artifact_dir(run.id) / "report.json").write_text(json.dumps({"a": 1})[:-1])
    with pytest.raises(ArtifactError):
        store.read_json(run.id, "report.json")
