"""keras-hub presets as backbones, on tiny presets the tests save themselves (no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest
from imagegen import random_pixels
from kerashub_presets import (
    TORCH_OFFSET,
    TORCH_SCALE,
    offline_kagglehub,
    put_in_kagglehub_cache,
    saved_presets,
)

from tlcore.backbones import (
    KERAS_HUB_PRESETS,
    KerasHubFeatures,
    PresetPreprocess,
    build_backbone,
    describe_kerashub_presets,
)
from tlcore.backbones.blocks import backbone_blocks, block_table
from tlcore.backbones.keras_hub import image_classifier_presets, kerashub_block_table
from tlcore.config import BackboneSpec, TrainSpec
from tlcore.errors import BackboneError, ConfigError, WeightsUnavailableError
from tlcore.report.evaluate import prepare_images
from tlcore.report.explain import GRAD_CAM, SALIENCY, explain_batch
from tlcore.training.model import build_classifier

SIZE = 48


@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return saved_presets(tmp_path_factory.mktemp("kerashub"))


@pytest.fixture(autouse=True)
def offline(presets: Path, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    offline_kagglehub(monkeypatch, tmp_path / "kagglehub", presets)
    return tmp_path / "kagglehub"


def spec(folder: Path, weights: str = "imagenet") -> BackboneSpec:
    return BackboneSpec(f"kerashub:{folder}", weights=weights)


def pixels(count: int = 2) -> np.ndarray:
    return prepare_images([random_pixels(seed, 40, 56) for seed in range(count)], SIZE)


def test_a_resnet_preset_is_its_own_flat_graph_with_the_converter_as_preprocessing(presets):
    resolved = build_backbone(spec(presets / "resnet"), SIZE)
    source = keras_hub.models.Backbone.from_preset(str(presets / "resnet"))
    images = np.asarray(pixels(), np.float32)

    assert isinstance(resolved.model, KerasHubFeatures) and resolved.info is None
    assert resolved.model.output_shape == (None, 6, 6, 32)
    np.testing.assert_allclose(resolved.model(images), source(images), atol=1e-5)
    assert isinstance(resolved.preprocess, PresetPreprocess)
    np.testing.assert_allclose(resolved.preprocess(images), images * TORCH_SCALE + np.array(TORCH_OFFSET),
                               rtol=1e-5, atol=1e-5)
    assert resolved.weights_loaded == str(presets / "resnet" / "model.weights.h5")
    assert "ResNetBackbone" in resolved.notes[0] and "trained on 224x224" in " ".join(resolved.notes)
    blocks = backbone_blocks(resolved.model, spec(presets / "resnet").name)
    assert [block.name for block in blocks] == ["stem", "stack0_block0", "stack1_block0"]
    assert sum(block.size for block in blocks) == len(resolved.model.layers)


def test_a_vit_preset_lays_out_its_transformer_layers_and_pools_the_class_token(presets):
    resolved = build_backbone(spec(presets / "vit"), SIZE)
    source = keras_hub.models.Backbone.from_preset(str(presets / "vit"))
    images = np.asarray(pixels(), np.float32)

    names = [layer.name for layer in resolved.model.layers]
    assert names[2:] == ["transformer_block_1", "transformer_block_2", "ln", "token_pool"]
    np.testing.assert_allclose(resolved.model(images), source(images)[:, 0], atol=1e-5)
    assert resolved.model.output_shape == (None, 16) and "class token" in resolved.notes[0]
    table = block_table(resolved.model, spec(presets / "vit").name)
    assert [row.name for row in table] == ["stem", "transformer_block_1", "transformer_block_2"]
    assert sum(row.params for row in table) == resolved.model.count_params()


def test_the_block_table_of_a_preset_is_read_without_its_weights(presets):
    built = build_backbone(spec(presets / "resnet"), SIZE).model
    table = kerashub_block_table(spec(presets / "resnet"), SIZE)

    assert table == tuple(block_table(built, spec(presets / "resnet").name))
    assert [row.name for row in table] == ["stem", "stack0_block0", "stack1_block0"]
    assert table[-1].params == sum(w.numpy().size for layer in built.layers[-10:]
                                   if not isinstance(layer, keras.layers.BatchNormalization)
                                   for w in layer.trainable_weights)


def test_weights_none_is_the_same_architecture_at_random(presets):
    pretrained = build_backbone(spec(presets / "resnet"), SIZE).model
    random = build_backbone(spec(presets / "resnet", "none"), SIZE)

    assert random.weights_loaded == "random" and "random weights" in random.notes[0]
    assert [w.shape for w in random.model.weights] == [w.shape for w in pretrained.weights]
    kernel = next(i for i, w in enumerate(pretrained.weights) if w.path == "conv1_conv/kernel")
    assert not np.allclose(random.model.weights[kernel].numpy(), pretrained.weights[kernel].numpy())


def test_a_transformer_takes_only_its_own_size(presets):
    with pytest.raises(BackboneError, match="48x48 images only") as caught:
        build_backbone(spec(presets / "vit"), 64)
    assert "Set the image size to 48" in caught.value.hint


def test_an_uncached_named_preset_offline_says_how_to_use_a_folder():
    with pytest.raises(WeightsUnavailableError, match="not in kagglehub's cache") as caught:
        build_backbone(BackboneSpec("kerashub:resnet_50_imagenet"), SIZE)
    assert "kerashub:/path/to/folder" in caught.value.hint and "save_to_preset" in caught.value.hint


def test_a_named_preset_in_kagglehubs_cache_loads_offline_and_the_table_says_so(presets, offline):
    handle = KERAS_HUB_PRESETS["resnet_18_imagenet"].handle
    before = {row["name"]: row for row in describe_kerashub_presets()}
    put_in_kagglehub_cache(presets / "resnet", handle)
    after = {row["name"]: row for row in describe_kerashub_presets()}

    assert not before["kerashub:resnet_18_imagenet"]["on_disk"]
    assert "needs a download" in before["kerashub:resnet_18_imagenet"]["download"]
    assert after["kerashub:resnet_18_imagenet"]["on_disk"]
    assert not after["kerashub:resnet_50_imagenet"]["on_disk"]
    resolved = build_backbone(BackboneSpec("kerashub:resnet_18_imagenet"), SIZE)
    assert resolved.weights_loaded == handle and "kagglehub's cache" in resolved.notes[0]
    assert resolved.model.output_shape == (None, 6, 6, 32)


def test_unknown_names_and_folders_that_are_not_presets_are_refused(presets, tmp_path):
    with pytest.raises(BackboneError, match="no preset named 'resnet_9000'") as caught:
        build_backbone(BackboneSpec("kerashub:resnet_9000"), SIZE)
    assert "efficientnet" in caught.value.hint or "csp_" in caught.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="no config.json"):
        build_backbone(spec(tmp_path / "empty"), SIZE)
    with pytest.raises(BackboneError, match="outside the folders"):
        build_backbone(BackboneSpec("kerashub:/usr/share"), SIZE)


@pytest.mark.parametrize("backbone, message", [
    (BackboneSpec("kerashub:"), "needs a preset name or a folder"),
    (BackboneSpec("kerashub:kaggle://keras/resnetv1/keras/resnet_50_imagenet/3"), "download handle"),
    (BackboneSpec("kerashub:resnet 50!"), "neither a keras-hub preset name nor a folder"),
    (BackboneSpec("kerashub:resnet_50_imagenet", alpha=0.5), "no width multiplier"),
    (BackboneSpec("kerashub:resnet_50_imagenet", weights="/tmp/w.h5"), "brings its own weights"),
    (BackboneSpec("kerashub:presets/resnet"), "not a full path"),
])
def test_spec_validation_refuses_what_cannot_apply_to_a_preset(backbone, message):
    with pytest.raises(ConfigError, match=message):
        backbone.validate()


def test_a_preset_folder_is_a_local_file_made_absolute(presets, monkeypatch):
    monkeypatch.chdir(presets)
    relative = BackboneSpec("kerashub:./resnet")
    assert relative.kerashub_folder == "./resnet" and BackboneSpec("kerashub:vit_b").kerashub_folder is None
    absolute = relative.with_absolute_paths()
    folder = f"{presets}/./resnet"
    assert absolute.name == f"kerashub:{folder}" and absolute.local_files() == [folder]
    absolute.validate()
    assert BackboneSpec("kerashub:resnet_50_imagenet").local_files() == []


def test_the_listed_presets_are_keras_hubs_own():
    registered = keras_hub.models.Backbone.presets
    for preset in KERAS_HUB_PRESETS.values():
        entry = registered[preset.name]
        assert entry["kaggle_handle"] == preset.handle, preset.name
        assert entry["metadata"]["params"] == preset.params, preset.name
        assert preset.name in getattr(keras_hub.models, preset.family).presets, preset.name
    assert set(KERAS_HUB_PRESETS) <= set(image_classifier_presets())


@pytest.mark.parametrize("name, kind, layer", [("resnet", GRAD_CAM, "stack1_block0_out"),
                                               ("vit", SALIENCY, None)])
def test_grad_cam_where_there_is_a_map_and_saliency_for_tokens(presets, name, kind, layer):
    model = build_classifier(build_backbone(spec(presets / name), SIZE), 3, SIZE, TrainSpec())
    explained = explain_batch(model, ["a", "b", "c"], pixels(1))[0]

    assert (explained.kind, explained.layer) == (kind, layer)
    assert explained.heatmap.shape == (SIZE, SIZE) and explained.heatmap.max() == pytest.approx(1.0)
    assert explained.heatmap.min() >= 0.0 and len(np.unique(explained.heatmap)) > 10


@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_a_saved_classifier_loads_in_safe_mode_with_the_same_answers(presets, tmp_path, name):
    model = build_classifier(build_backbone(spec(presets / name), SIZE), 3, SIZE, TrainSpec())
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = pixels(3)

    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    # The input layer's name is numbered per process; every other layer keeps keras-hub's name.
    assert [layer.name for layer in loaded.get_layer("backbone").layers[1:]] == [
        layer.name for layer in model.get_layer("backbone").layers[1:]]


@pytest.mark.slow
def test_a_fresh_process_loads_the_saved_model_without_importing_keras_hub_itself(presets, tmp_path):
    model = build_classifier(build_backbone(spec(presets / "vit"), SIZE), 3, SIZE, TrainSpec())
    path = tmp_path / "model.keras"
    model.save(path)
    images = pixels(2)
    np.save(tmp_path / "images.npy", images)
    script = ("import sys, keras, numpy as np, tlcore.backbones; "
              "assert 'keras_hub' not in sys.modules; "
              f"m = keras.saving.load_model({str(path)!r}, safe_mode=True); "
              f"np.save({str(tmp_path / 'out.npy')!r}, m.predict(np.load({str(tmp_path / 'images.npy')!r}), "
              "verbose=0))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model.predict(images, verbose=0), atol=1e-6)

