"""Runs on keras-hub presets: every strategy, the feature cache, whole blocks, export and serving."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
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
from tlcore.deploy.export import export_run
from tlcore.deploy.serving import load_run
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


@pytest.fixture(scope="module")
def trained(presets, tmp_path_factory) -> tuple[RunStore, str]:
    """A finished frozen run on the tiny ViT, in a store of its own."""
    root = tmp_path_factory.mktemp("kerashub-store")
    with studio_home(root), pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_DATA_ROOT", f"{root}:{presets}")
        store = RunStore(root / "tlhome")
        run, _ = store.create_run(on_preset(presets / "vit", "frozen"))
        jobs.claim_for_this_process(store, run.id)
        assert execute_run(store, run.id).status == "finished"
    return store, run.id


def tflite_outputs(model_file: Path, pixels: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_path=str(model_file))
    interpreter.allocate_tensors()
    rows = []
    for row in pixels:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], row[None].astype(np.float32))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
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
