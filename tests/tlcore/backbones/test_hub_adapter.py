"""The TF Hub adapter on SavedModels written by the tests themselves (no network)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from savedmodels import IMAGES, MeanColour

from tlcore.backbones import HubBackbone, ResolvedBackbone, build_backbone, weights_on_disk
from tlcore.config import BackboneSpec
from tlcore.errors import BackboneError, WeightsUnavailableError


class TinyFeatureVector(tf.Module):
    """A TF Hub-style reusable SavedModel: a conv, a bias and a training-only running mean."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = tf.Variable(tf.random.normal([3, 3, 3, 4], seed=1) * 0.5, name="conv/kernel")
        self.bias = tf.Variable(tf.zeros([4]), name="conv/bias")
        self.running_mean = tf.Variable(tf.zeros([4]), trainable=False, name="running_mean")

    @tf.function
    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        features = tf.nn.relu(tf.nn.conv2d(images, self.kernel, 1, "SAME") + self.bias)
        pooled = tf.reduce_mean(features, axis=[1, 2])
        if training:
            self.running_mean.assign(0.9 * self.running_mean + 0.1 * tf.reduce_mean(pooled, 0))
        return pooled - self.running_mean


@pytest.fixture
def saved_model(tmp_path: Path) -> Path:
    module = TinyFeatureVector()
    # Reusable SavedModels trace both modes, so that training is a Python bool when loaded.
    for training in (False, True):
        module.__call__.get_concrete_function(IMAGES, training=training)
    path = tmp_path / "tiny_hub_model"
    tf.saved_model.save(module, str(path))
    return path


def classifier(resolved: ResolvedBackbone, size: int = 16) -> keras.Model:
    inputs = keras.Input((size, size, 3))
    features = resolved.model(resolved.preprocess(inputs))
    return keras.Model(inputs, keras.layers.Dense(2)(features))


def fit_one_step(model: keras.Model) -> None:
    model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(True))
    images = np.random.uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    model.fit(images, np.arange(8) % 2, batch_size=8, epochs=1, verbose=0)


def hub_layer(resolved: ResolvedBackbone) -> HubBackbone:
    return next(layer for layer in resolved.model.layers if isinstance(layer, HubBackbone))


def values(layer: HubBackbone) -> dict[str, np.ndarray]:
    return {v.name: v.numpy().copy() for v in layer.hub_variables}


def test_builds_a_feature_vector_backbone(saved_model: Path) -> None:
    resolved = build_backbone(BackboneSpec(f"hub:{saved_model}"), 16)
    layer = hub_layer(resolved)
    assert resolved.model.output_shape == (None, 4)
    assert resolved.preprocess.mode == "unit" and resolved.info is None
    assert resolved.weights_loaded == f"hub:{saved_model}"
    assert {v.name: v.trainable for v in layer.hub_variables} == {
        "conv_kernel": True, "conv_bias": True, "running_mean": False
    }
    assert "2 trainable and 1 non-trainable" in resolved.notes[0]
    assert weights_on_disk(f"hub:{saved_model}")


def test_frozen_backbone_keeps_its_weights(saved_model: Path) -> None:
    resolved = build_backbone(BackboneSpec(f"hub:{saved_model}"), 16)
    resolved.model.trainable = False
    model = classifier(resolved)
    before = values(hub_layer(resolved))
    head_before = model.layers[-1].kernel.numpy().copy()

    fit_one_step(model)

    after = values(hub_layer(resolved))
    assert all(np.array_equal(before[name], after[name]) for name in before)
    assert not np.array_equal(head_before, model.layers[-1].kernel.numpy())


def test_fine_tuning_updates_the_saved_model_variables(saved_model: Path) -> None:
    resolved = build_backbone(BackboneSpec(f"hub:{saved_model}"), 16)
    layer = hub_layer(resolved)
    model = classifier(resolved)
    assert len(model.trainable_weights) == 2 + 2  # kernel, bias + the head's kernel, bias
    before = values(layer)

    fit_one_step(model)

    after = values(layer)
    assert not np.array_equal(before["conv_kernel"], after["conv_kernel"])
    # Fine-tuning runs the SavedModel in inference mode: its training-only statistics stay put
    # while its trainable variables move (tests/tlcore/backbones/test_hub_batchnorm.py).
    np.testing.assert_array_equal(before["running_mean"], after["running_mean"])


def test_fine_tuned_model_survives_a_safe_mode_round_trip(
    saved_model: Path, tmp_path: Path
) -> None:
    resolved = build_backbone(BackboneSpec(f"hub:{saved_model}"), 16)
    model = classifier(resolved)
    fit_one_step(model)
    model.save(tmp_path / "model.keras")

    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)

    images = np.random.uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    reloaded = next(
        layer
        for sub in loaded.layers if isinstance(sub, keras.Model)
        for layer in sub.layers if isinstance(layer, HubBackbone)
    )
    assert reloaded.get_config()["handle"] == str(saved_model)
    fine_tuned, fresh = values(hub_layer(resolved)), values(HubBackbone(str(saved_model)))
    assert not np.array_equal(values(reloaded)["conv_kernel"], fresh["conv_kernel"])
    np.testing.assert_array_equal(values(reloaded)["conv_kernel"], fine_tuned["conv_kernel"])


def test_a_model_without_training_argument(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    tf.saved_model.save(MeanColour(), str(path))
    resolved = build_backbone(BackboneSpec(f"hub:{path}"), 8)
    assert resolved.model.output_shape == (None, 3)
    assert any("inference mode" in note for note in resolved.notes)
    ones = np.full((1, 8, 8, 3), 0.5, "float32")
    np.testing.assert_allclose(resolved.model(ones), [[1.0, 1.0, 1.0]])


def test_an_image_size_the_model_does_not_take(tmp_path: Path) -> None:
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.__call__ = tf.function(
        lambda images: tf.reduce_mean(images, [1, 2]) * module.scale,
        input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)],
    )
    path = tmp_path / "fixed_size"
    tf.saved_model.save(module, str(path))
    assert build_backbone(BackboneSpec(f"hub:{path}"), 8).model.output_shape == (None, 3)
    with pytest.raises(BackboneError, match="does not take 16x16"):
        build_backbone(BackboneSpec(f"hub:{path}"), 16)


def test_a_signature_only_saved_model_is_refused(tmp_path: Path) -> None:
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.features = tf.function(lambda images: images * module.scale, input_signature=[IMAGES])
    path = tmp_path / "signature_only"
    tf.saved_model.save(module, str(path), signatures=module.features.get_concrete_function())
    with pytest.raises(BackboneError, match="cannot be called"):
        build_backbone(BackboneSpec(f"hub:{path}"), 8)


def test_url_offline_says_to_use_a_local_folder() -> None:
    # The .invalid top-level domain never resolves, so this fails fast even with a network.
    with pytest.raises(WeightsUnavailableError) as caught:
        build_backbone(BackboneSpec("hub:https://tfhub.invalid/some/model/1"), 32)
    assert "hub:/path/to/folder" in str(caught.value) and "TFHUB_CACHE_DIR" in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (BackboneSpec("hub:/no/such/folder"), "outside the folders weights may be read from"),
        (BackboneSpec("hub:"), "needs a URL or a folder"),
        (BackboneSpec("hub:/x", alpha=0.5), "no width multiplier"),
        (BackboneSpec("hub:/x", weights="none"), "own trained weights"),
    ],
)
def test_bad_hub_specs(spec: BackboneSpec, message: str) -> None:
    with pytest.raises(BackboneError, match=message):
        build_backbone(spec, 32)


def test_a_missing_folder_inside_the_allowed_folders_is_not_a_saved_model(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="not a SavedModel folder"):
        build_backbone(BackboneSpec(f"hub:{tmp_path / 'no_such_model'}"), 8)


def test_a_saved_model_outside_the_allowed_folders_is_refused_when_built_and_reloaded(
    saved_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "model").symlink_to(saved_model)
    monkeypatch.setenv("TL_DATA_ROOT", str(tmp_path / "data"))
    climbing = tmp_path / "data" / ".." / saved_model.name
    for handle in (saved_model, tmp_path / "data" / "model", climbing):
        with pytest.raises(BackboneError, match="outside the folders weights may be read from"):
            build_backbone(BackboneSpec(f"hub:{handle}"), 16)
    with pytest.raises(BackboneError, match="outside the folders weights may be read from"):
        HubBackbone(str(saved_model))  # what loading a saved .keras file naming it does
