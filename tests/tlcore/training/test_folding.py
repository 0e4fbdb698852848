"""tlcore.training.folding: BatchNorm folded into convolutions gives the network's own outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlcore.backbones.catalogue import CATALOGUE
from tlcore.training.folding import FrozenForward

SIZE = 32


def randomise_batchnorm(model: keras.Model, seed: int = 0) -> int:
    """Give every BatchNorm statistics and an affine map far from the identity, so a wrong fold
    shows; returns how many there are."""
    rng = np.random.default_rng(seed)
    count = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.2, channels))
            count += 1
    return count


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers.extend(_all_layers(layer))
    return layers


def images(count: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, SIZE, SIZE, 3)).astype(np.float32)


def assert_same_outputs(model: keras.Model, forward: FrozenForward) -> None:
    x = images()
    expected = np.asarray(model.predict_on_batch(x))
    folded = np.asarray(forward(x))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-5 * scale)


def conv_bn_model(**conv_options: object) -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", **conv_options)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="valid", depth_multiplier=2, use_bias=False)(x)
    x = keras.layers.BatchNormalization(scale=False, center=False)(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_mobilenet_v2_folds_every_batchnorm_and_keeps_its_outputs() -> None:
    model = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None,
                                           input_shape=(SIZE, SIZE, 3), pooling="avg")
    norms = randomise_batchnorm(model)
    forward = FrozenForward(model)
    assert forward.folded == norms == 52
    assert_same_outputs(model, forward)


@pytest.mark.parametrize("conv_options", [{"use_bias": False}, {"use_bias": True}])
def test_convolution_bias_and_a_batchnorm_without_scale_or_centre_fold(conv_options) -> None:
    model = conv_bn_model(**conv_options)
    for layer in model.layers:
        if getattr(layer, "use_bias", False):
            layer.bias.assign(np.linspace(-1, 1, layer.bias.shape[0]))
    randomise_batchnorm(model)
    forward = FrozenForward(model)
    assert forward.folded == 2
    assert_same_outputs(model, forward)


def test_a_nested_functional_model_is_folded_too() -> None:
    inner = conv_bn_model()
    randomise_batchnorm(inner)
    inputs = keras.Input((SIZE, SIZE, 3))
    outer = keras.Model(inputs, keras.layers.Dense(3)(inner(inputs)))
    forward = FrozenForward(outer)
    assert forward.folded == 2
    assert_same_outputs(outer, forward)


def read_elsewhere_too(inputs: keras.KerasTensor) -> keras.KerasTensor:
    conv = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    return keras.layers.Add()([keras.layers.BatchNormalization()(conv), conv])


def with_an_activation(inputs: keras.KerasTensor) -> keras.KerasTensor:
    activated = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return keras.layers.Conv2D(4, 1)(keras.layers.BatchNormalization()(activated))


def also_an_output(inputs: keras.KerasTensor) -> list[keras.KerasTensor]:
    """The caller reads the convolution itself, although only a BatchNorm reads it inside."""
    conv = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    return [conv, keras.layers.BatchNormalization()(conv)]


@pytest.mark.parametrize("outputs", [read_elsewhere_too, with_an_activation, also_an_output])
def test_a_convolution_the_batchnorm_cannot_be_folded_into_runs_unfolded(outputs) -> None:
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, outputs(inputs))
    randomise_batchnorm(model)
    forward = FrozenForward(model)
    assert forward.folded == 0
    assert_same_outputs(model, forward)


def test_a_subclassed_model_runs_unfolded() -> None:
    class Subclassed(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)
            self.norm = keras.layers.BatchNormalization()

        def call(self, x):
            return self.norm(self.conv(x))

    model = Subclassed()
    model(images())
    forward = FrozenForward(model)
    assert forward.folded == 0
    assert_same_outputs(model, forward)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_catalogue_backbone_keeps_its_outputs_when_folded(name: str) -> None:
    info = CATALOGUE[name]
    size = max(SIZE, info.min_size)
    options = {"alpha": info.default_alpha} if info.default_alpha else {}
    constructor = getattr(keras.applications, info.constructor)
    model = constructor(include_top=False, weights=None, input_shape=(size, size, 3),
                        pooling="avg", **options)
    randomise_batchnorm(model)
    forward = FrozenForward(model)
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    expected = np.asarray(model.predict_on_batch(x))
    np.testing.assert_allclose(np.asarray(forward(x)), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("nested", [False, True])
def test_uint8_pixels_give_exactly_the_outputs_of_the_same_pixels_as_float32(nested: bool) -> None:
    model = conv_bn_model()
    randomise_batchnorm(model)
    if nested:  # not functional: it runs through predict_on_batch, which needs floats
        model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), model])
    forward = FrozenForward(model)
    pixels = np.random.default_rng(3).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    as_floats = np.asarray(forward(pixels.astype(np.float32)))
    np.testing.assert_array_equal(np.asarray(forward(pixels)), as_floats)
    assert np.abs(as_floats).max() > 0
