import dataclasses
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from imagegen import random_pixels
from PIL import Image
from specs import TINY_SIZE, tiny_spec

from tlcore.cli import main
from tlcore.data import load_dataset
from tlcore.deploy.export import export_metadata, export_run, metadata_path
from tlcore.deploy.export_check import ExportCheck
from tlcore.deploy.serving import load_run
from tlcore.errors import ConfigError, ExportError, RunStateError
from tlcore.report.evaluate import prepare_images
from tlcore.runs import jobs
from tlcore.runs.runner import execute_run
from tlcore.runs.store import RunStore


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, str]:
    """One finished tiny run, trained once for this module in a store of its own."""
    store = RunStore(tmp_path_factory.mktemp("export") / "tlhome")
    run, _ = store.create_run(tiny_spec("frozen"))
    jobs.claim_for_this_process(store, run.id)
    assert execute_run(store, run.id).status == "finished"
    return store, run.id


def images() -> np.ndarray:
    """Three generated photos, decoded and resized as the studio does before its model."""
    return prepare_images([random_pixels(seed, 40, 56) for seed in range(3)], TINY_SIZE)


def unzip(path: Path, into: Path) -> Path:
    with zipfile.ZipFile(path) as archive:
        archive.extractall(into)
    return into


def tflite_outputs(model_file: Path, pixels: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_path=str(model_file))
    rows = []
    for row in pixels:
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], row[None].astype(np.float32))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    return np.array(rows)


def test_tflite_export_carries_labels_and_predicts_what_the_studio_predicts(trained, tmp_path):
    store, run_id = trained
    loaded = load_run(run_id, store)
    folder = unzip(export_run(run_id, "tflite", store), tmp_path / "unzipped")

    assert sorted(p.name for p in folder.iterdir()) == ["labels.txt", "metadata.json", "model.tflite"]
    assert (folder / "labels.txt").read_text().splitlines() == loaded.class_names
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["input"]["shape"] == [1, TINY_SIZE, TINY_SIZE, 3]
    assert metadata["input"]["range"] == [0, 255]
    assert metadata["labels"] == loaded.class_names
    test_images = len(load_dataset(store.get(run_id).spec.dataset).test.labels)
    assert metadata["check"]["images"] == metadata["check"]["test_images"] == test_images
    assert metadata["check"]["agreement"] == 1.0
    assert metadata["check"]["exported_accuracy"] == metadata["check"]["studio_accuracy"]
    assert export_metadata(store.artifacts(run_id).export("tflite")) == metadata
    pixels = images()
    expected = loaded.model.predict(pixels, verbose=0)
    np.testing.assert_allclose(tflite_outputs(folder / "model.tflite", pixels), expected, atol=1e-5)


def test_cli_export_writes_the_zip_where_asked_and_explains_a_bad_destination(
        trained, monkeypatch, tmp_path, capsys):
    store, run_id = trained
    monkeypatch.setenv("TL_HOME", str(store.root))
    assert main(["export", run_id, "--format", "tflite", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    written = Path(out.strip())
    assert "this file" in err and "same top class on 100.0%" in err
    assert written == tmp_path / f"{run_id}-tflite.zip"
    assert zipfile.ZipFile(written).read("model.tflite")[4:8] == b"TFL3"

    assert main(["export", run_id, "--out", str(tmp_path / "missing" / "x.zip")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Could not write") and err.count("\n") == 1


@pytest.mark.slow
def test_quantized_tflite_is_several_times_smaller_and_still_gives_probabilities(trained, tmp_path):
    store, run_id = trained
    plain = unzip(export_run(run_id, "tflite", store), tmp_path / "plain") / "model.tflite"
    small = unzip(export_run(run_id, "tflite_quantized", store), tmp_path / "small") / "model.tflite"

    assert small.stat().st_size < plain.stat().st_size / 2.5
    pixels = images()
    outputs = tflite_outputs(small, pixels)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(outputs, load_run(run_id, store).model.predict(pixels, verbose=0), atol=0.05)


@pytest.mark.slow
def test_saved_model_export_serves_the_same_probabilities(trained, tmp_path):
    store, run_id = trained
    folder = unzip(export_run(run_id, "saved_model", store), tmp_path / "unzipped")
    served = tf.saved_model.load(str(folder / "saved_model"))
    pixels = images()
    np.testing.assert_allclose(served.serve(tf.constant(pixels, tf.float32)).numpy(),
                               load_run(run_id, store).model.predict(pixels, verbose=0), atol=1e-5)


def test_an_export_is_built_once_and_again_when_the_model_changes(trained, monkeypatch):
    store, run_id = trained
    target = store.artifacts(run_id).export("tflite_quantized")
    target.unlink(missing_ok=True)
    conversions = []

    def convert(self, path, **kwargs):  # the real conversions are tested above; this counts them
        conversions.append(kwargs["format"])
        Path(path).write_bytes(b"TFL3")

    monkeypatch.setattr(keras.Model, "export", convert)
    monkeypatch.setattr("tlcore.deploy.export.check_export", lambda *args: ExportCheck(1, 1, 1.0, 1.0, 1.0))
    assert export_run(run_id, "tflite_quantized", store) == target and conversions == ["litert"]
    built_at = target.stat().st_mtime_ns
    assert export_run(run_id, "tflite_quantized", store) == target and len(conversions) == 1

    later = target.stat().st_mtime + 5
    os.utime(store.model_path(run_id), (later, later))  # as a resumed run rewrites its model
    assert export_run(run_id, "tflite_quantized", store) == target and len(conversions) == 2
    assert target.stat().st_mtime_ns > built_at
    target.unlink()


def test_a_refused_conversion_is_an_export_error_and_leaves_nothing(trained, monkeypatch):
    store, run_id = trained
    target = store.artifacts(run_id).export("saved_model")
    target.unlink(missing_ok=True)
    metadata_path(target).unlink(missing_ok=True)

    def refuse(self, *args, **kwargs):
        raise ValueError("op not supported\nlong converter log")

    monkeypatch.setattr(keras.Model, "export", refuse)
    refused = "could not be converted to TensorFlow SavedModel.*op not supported"
    with pytest.raises(ExportError, match=refused):
        export_run(run_id, "saved_model", store)
    assert not target.exists() and not metadata_path(target).exists()
    assert [p for p in target.parent.iterdir() if p.is_dir()] == [], "no half-built package"


def test_unknown_formats_and_unfinished_runs_are_refused(trained):
    store, run_id = trained
    with pytest.raises(ConfigError, match="Unknown export format 'coreml'.*tflite_int8, onnx"):
        export_run(run_id, "coreml", store)
    queued, _ = store.create_run(tiny_spec("frozen", epochs=2))
    with pytest.raises(RunStateError, match="queued"):
        export_run(queued.id, "tflite", store)


def test_a_file_that_does_not_run_is_an_export_error_and_leaves_nothing(trained, monkeypatch):
    store, run_id = trained
    target = store.artifacts(run_id).export("tflite")
    target.unlink(missing_ok=True)
    metadata_path(target).unlink(missing_ok=True)
    monkeypatch.setattr(keras.Model, "export",
                        lambda self, path, **kwargs: Path(path).write_bytes(b"garbage"))
    with pytest.raises(ExportError, match="was written but does not run"):
        export_run(run_id, "tflite", store)
    assert not target.exists() and not metadata_path(target).exists()
    assert [p for p in target.parent.iterdir() if p.is_dir()] == [], "no half-built package"


def test_an_export_whose_images_are_gone_says_it_was_not_checked_and_int8_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    for index, colour in enumerate(((200, 30, 30), (30, 200, 30))):
        (folder / f"class{index}").mkdir(parents=True)
        for seed in range(12):
            pixels = np.clip(random_pixels(seed, 20, 20) // 4 + np.array(colour, np.uint8), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"class{index}" / f"{seed}.png")
    monkeypatch.setenv("TL_DATA_ROOT", str(tmp_path))
    store = RunStore()
    spec = tiny_spec("frozen")
    dataset = dataclasses.replace(spec.dataset, source=f"folder:{folder}")
    run, _ = store.create_run(dataclasses.replace(spec, dataset=dataset))
    jobs.claim_for_this_process(store, run.id)
    assert execute_run(store, run.id).status == "finished"
    shutil.rmtree(folder)
    monkeypatch.setattr(keras.Model, "export", lambda self, path, **kwargs: Path(path).mkdir())  # never run

    metadata = export_metadata(export_run(run.id, "saved_model", store))
    assert "check" not in metadata and str(folder) in metadata["check_skipped"]
    refused = f"calibrated on its training images.*{re.escape(str(folder))}.*tflite_quantized"
    with pytest.raises(ExportError, match=refused):  # int8 cannot even be converted without them
        export_run(run.id, "tflite_int8", store)


def test_the_check_reads_as_a_sentence_and_names_a_sample():
    assert ExportCheck(150, 150, 0.68, 0.6667, 0.96).describe() == (
        "On 150 test images: this file 68.0%, the studio's model 66.7%; same top class on 96.0% of them.")
    assert "(a sample of 1000)" in ExportCheck(300, 1000, 0.5, 0.5, 1.0).describe()
