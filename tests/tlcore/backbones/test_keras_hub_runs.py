"""Runs on keras-hub presets: every strategy, the feature cache, whole blocks, every export and serving."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import tensorflow as tf
from homes import studio_home
from imagegen import random_pixels
from kerashub_presets import offline_kagglehub, saved_presets
from notes import feature_passes
from specs import TINY_SIZE, tiny_spec

from tlcore.backbones import build_backbone
from tlcore.config import BackboneSpec, RunSpec
from tlcore.data import load_dataset
from tlcore.deploy.export import EXPORT_FORMATS, export_run, metadata_path
from tlcore.deploy.serving import load_run
from tlcore.errors import ExportError
from tlcore.report.evaluate import prepare_images
from tlcore.runs import jobs
from tlcore.runs.runner import execute_run
from tlcore.runs.store import RunStore
from tlcore.training.loop import train
from tlcore.training.model import backbone_of


@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_presets(tmp_path_factory.mktemp("kerashub-runs"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    with studio_home(tmp_path_factory.mktemp("kerashub-data")):
        return load_dataset(tiny_spec().dataset)


@pytest.fixture(autouse=True)
def offline(presets: Path, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offline_kagglehub(monkeypatch, tmp_path / "kagglehub", presets)


def on_preset(folder: Path, strategy: str, weights: str = "imagenet", **train) -> RunSpec:
    spec = tiny_spec(strategy, **train)
    return dataclasses.replace(spec, backbone=BackboneSpec(f"kerashub:{folder}", weights=weights))


def backbone_weights(model) -> dict[str, np.ndarray]:
    return {w.path: np.array(w.numpy()) for w in backbone_of(model).weights}


def test_a_frozen_run_trains_the_head_on_cached_features_and_leaves_the_preset_alone(presets, bundle):
    spec = on_preset(presets / "resnet", "frozen", epochs=2)
    first = train(spec, bundle=bundle)
    again = train(dataclasses.replace(spec, train=dataclasses.replace(spec.train, learning_rate=3e-3)),
                  bundle=bundle)

    assert first.status == "finished" and [e.epoch for e in first.history] == [1, 2]
    assert any("trained on cached features" in note for note in first.notes)
    preset = {w.path: w.numpy() for w in build_backbone(spec.backbone, TINY_SIZE).model.weights}
    for result in (first, again):
        after = backbone_weights(result.model)
        assert after.keys() == preset.keys() and all(np.array_equal(preset[k], after[k]) for k in preset)
    images = len(bundle.train) + len(bundle.val) + len(bundle.test)
    assert feature_passes(first.notes) == [(images, 0)]
    assert feature_passes(again.notes) == [(0, images)]


@pytest.mark.parametrize("preset, cut, top, inside", [
    ("resnet", "stack0_block0_out", "stack1_block0", ("stack1_block0_",)),
    # A ViT's weights keep keras-hub's paths, under the encoder that held its layers.
    ("vit", "transformer_block_1", "transformer_block_2",
     ("vit_encoder/transformer_block_2/", "vit_encoder/ln/")),
])
def test_fine_tuning_the_top_block_trains_only_it_above_a_cached_cut(presets, bundle, preset, cut, top,
                                                                     inside):
    spec = on_preset(presets / preset, "frozen_then_finetune", epochs=1, fine_tune_epochs=1,
                     fine_tune_blocks=1, fine_tune_learning_rate=1e-2)
    before = {w.path: w.numpy() for w in build_backbone(spec.backbone, TINY_SIZE).model.weights}
    result = train(spec, bundle=bundle)
    after = backbone_weights(result.model)

    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert changed and all(path.startswith(inside) for path in changed), changed
    assert not any("moving" in path for path in changed)
    assert any(f"Frozen part up to {cut} run once per image" in note for note in result.notes)
    assert any(f"top 1 backbone blocks trainable ({top}" in note for note in result.notes)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["resnet", "vit"])
def test_scratch_trains_every_layer_of_the_random_architecture(presets, bundle, preset):
    spec = on_preset(presets / preset, "scratch", weights="none", epochs=1)
    result = train(spec, bundle=bundle)
    trained = backbone_of(result.model)

    assert result.status == "finished" and all(layer.trainable for layer in trained.layers)
    assert result.trainable_params == sum(int(np.prod(w.shape)) for w in result.model.trainable_weights)
    assert any("random weights" in note for note in result.notes)
    if preset == "resnet":  # scratch trains BatchNorm normally: its statistics move
        moving = [w for w in trained.weights if w.path == "conv1_bn/moving_mean"]
        assert moving and not np.allclose(moving[0].numpy(), 0.0)


def changed_weights(before: dict[str, np.ndarray], model) -> set[str]:
    after = backbone_weights(model)
    return {path for path in before if not np.array_equal(before[path], after[path])}


@pytest.mark.parametrize("preset, top, inside", [
    ("resnet", "stack1_block0", ("stack1_block0_",)),
    ("vit", "transformer_block_2", ("vit_encoder/transformer_block_2/", "vit_encoder/ln/")),
])
def test_finetune_trains_the_top_block_with_the_head_in_one_stage(presets, bundle, preset, top, inside):
    spec = on_preset(presets / preset, "finetune", epochs=1, fine_tune_blocks=1, fine_tune_learning_rate=1e-2)
    before = {w.path: w.numpy() for w in build_backbone(spec.backbone, TINY_SIZE).model.weights}
    result = train(spec, bundle=bundle)

    assert result.status == "finished" and [e.stage for e in result.history] == ["finetune"]
    changed = changed_weights(before, result.model)
    assert changed and all(path.startswith(inside) for path in changed), changed
    assert not any("moving" in path for path in changed), "BatchNorm stays in inference mode"
    assert any(f"Stage finetune: top 1 backbone blocks trainable ({top}" in n for n in result.notes)


@pytest.mark.slow  # a head search then two stages: about 9 s idle, 15 s beside other work
def test_auto_searches_a_head_then_fine_tunes_as_many_blocks_as_the_preset_has(presets, bundle):
    spec = on_preset(presets / "resnet", "auto", epochs=1, fine_tune_epochs=1, search_budget_seconds=5)
    before = {w.path: w.numpy() for w in build_backbone(spec.backbone, TINY_SIZE).model.weights}
    result = train(spec, bundle=bundle)

    assert result.status == "finished" and [e.stage for e in result.history] == ["frozen", "finetune"]
    assert any(note.startswith("Head search:") and "trial(s)" in note for note in result.notes)
    # auto asks for four blocks; the tiny ResNet has three (stem, stack0_block0, stack1_block0)
    assert any(note.startswith("Then:") and "top 3 block(s)" in note for note in result.notes)
    changed = changed_weights(before, result.model)
    assert {"conv1_conv/kernel", "stack1_block0_2_conv/kernel"} <= changed, "from the stem to the top"
    assert not any("moving" in path for path in changed)


def finished_run(presets: Path, root: Path, preset: str) -> tuple[RunStore, str]:
    """A finished frozen run on one tiny preset, in a store of its own under ``root``."""
    with studio_home(root), pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_DATA_ROOT", f"{root}:{presets}")
        store = RunStore(root / "tlhome")
        run, _ = store.create_run(on_preset(presets / preset, "frozen"))
        jobs.claim_for_this_process(store, run.id)
        assert execute_run(store, run.id).status == "finished"
    return store, run.id


@pytest.fixture(scope="module")
def trained(presets, tmp_path_factory) -> tuple[RunStore, str]:
    """A finished frozen run on the tiny ViT."""
    return finished_run(presets, tmp_path_factory.mktemp("kerashub-store"), "vit")


@pytest.fixture(scope="module")
def trained_resnet(presets, tmp_path_factory) -> tuple[RunStore, str]:
    """A finished frozen run on the tiny ResNet: a convolutional preset."""
    return finished_run(presets, tmp_path_factory.mktemp("kerashub-resnet-store"), "resnet")


def tflite_outputs(model_file: Path, pixels: np.ndarray) -> np.ndarray:
    """Each image through the interpreter as a device feeds it; integer outputs dequantised."""
    interpreter = tf.lite.Interpreter(model_path=str(model_file))
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for row in pixels:
        interpreter.set_tensor(source["index"], row[None].astype(source["dtype"]))
        interpreter.invoke()
        scale, zero_point = sink["quantization"]
        output = interpreter.get_tensor(sink["index"])[0].astype(np.float32)
        rows.append((output - zero_point) * scale if scale else output)
    return np.array(rows)


@pytest.mark.parametrize("format_name", ["tflite", pytest.param("saved_model", marks=pytest.mark.slow)])
def test_an_exported_preset_run_answers_as_the_served_model(trained, tmp_path, format_name):
    store, run_id = trained
    served = load_run(run_id, store)  # Keras' safe mode, as the app and the CLI load it
    pixels = prepare_images([random_pixels(seed, 40, 56) for seed in range(3)], TINY_SIZE)
    expected = served.model.predict(pixels, verbose=0)
    with zipfile.ZipFile(export_run(run_id, format_name, store)) as archive:
        archive.extractall(tmp_path)

    if format_name == "tflite":
        outputs = tflite_outputs(tmp_path / "model.tflite", pixels)
    else:
        loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
        outputs = loaded.serve(tf.constant(pixels, tf.float32))
    np.testing.assert_allclose(np.asarray(outputs), expected, atol=1e-5)
    assert (tmp_path / "labels.txt").read_text().splitlines() == served.class_names


def studio_answers(store: RunStore, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The run's test images (uint8 values as float32) and the served model's probabilities."""
    test = load_dataset(store.get(run_id).spec.dataset).test
    pixels = test.images[np.arange(len(test.labels))].astype(np.float32)
    return pixels, load_run(run_id, store).model.predict(pixels, verbose=0)


TOLERANCE = {"tflite_float16": 1e-3, "tflite_quantized": 0.05, "tflite_int8": 0.05, "onnx": 1e-5}
"""How far each format's probabilities may be from the studio's (int8's output step is 1/256)."""


SLOW = pytest.mark.slow  # the default suite keeps one of each kind: CI's 20 minutes are shared


@pytest.mark.parametrize("preset, format_name", [
    ("resnet", "tflite_float16"), pytest.param("resnet", "tflite_quantized", marks=SLOW),
    ("resnet", "tflite_int8"), ("resnet", "onnx"), pytest.param("vit", "tflite_float16", marks=SLOW),
    ("vit", "tflite_quantized"),
])
def test_the_deployable_formats_of_a_preset_run_keep_the_studios_answers(request, tmp_path, preset,
                                                                          format_name):
    store, run_id = request.getfixturevalue("trained_resnet" if preset == "resnet" else "trained")
    with zipfile.ZipFile(export_run(run_id, format_name, store)) as archive:
        archive.extractall(tmp_path)
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    pixels, expected = studio_answers(store, run_id)
    model_file = tmp_path / EXPORT_FORMATS[format_name].model_name

    if format_name == "onnx":
        session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        outputs = session.run([metadata["output"]["name"]], {metadata["input"]["name"]: pixels})[0]
    else:
        outputs = tflite_outputs(model_file, pixels)
    assert np.abs(outputs - expected).max() <= TOLERANCE[format_name]
    agreement = float(np.mean(outputs.argmax(axis=1) == expected.argmax(axis=1)))
    assert metadata["check"]["agreement"] == pytest.approx(agreement) and agreement >= 0.9
    assert metadata["check"]["images"] == len(pixels)


@pytest.mark.parametrize("format_name, refusal", [
    # LayerNormalization's ops have no integer kernels: they would stay in float.
    ("tflite_int8", r"could not quantise \(.*ln_1.*\).*tflite_quantized"),
    # tf2onnx writes exact GELU as Erfc, which ONNX has no operator for: the file does not load.
    ("onnx", r"ONNX \(float32\) file .* was written but does not run"),
], ids=["tflite_int8", "onnx"])
def test_a_transformer_preset_refuses_int8_and_onnx_and_ships_nothing(trained, format_name, refusal):
    store, run_id = trained
    target = store.artifacts(run_id).export(format_name)
    with pytest.raises(ExportError, match=refusal):
        export_run(run_id, format_name, store)
    assert not target.exists() and not metadata_path(target).exists()
    assert [p for p in target.parent.iterdir() if p.is_dir()] == [], "no half-built package"
