"""Why did the model say that: Grad-CAM heatmaps, or gradient saliency where no map is reachable.

A studio classifier is a chain (augmentation -> preprocessing -> backbone -> pooling -> dropout
-> softmax layer) whose backbone is a nested Keras model. The gradient has to reach a feature
map *inside* that nested model, so the chain is re-run layer by layer with the backbone swapped
for a copy that also returns that map. The map is found from the model (the last 4-D output
inside the backbone), never from a table of layer names, so every catalogue backbone works and
so does a TF Hub model that returns a feature map. A TF Hub model that returns only a vector
hides its spatial maps inside a SavedModel; then the heatmap is the gradient saliency of the
input pixels instead, labelled as such.

The class score is the softmax layer's input (the logit) when the last layer is a softmax
``Dense``: a confident prediction's probability is saturated and its gradient nearly vanishes.
"""

from __future__ import annotations

import hashlib
import io
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from tlcore.errors import ConfigError
from tlcore.files import atomic_write
from tlcore.images import load_image
from tlcore.report.evaluate import ImageInput, prepare_images

GRAD_CAM = "grad-cam"
SALIENCY = "saliency"
KINDS = (GRAD_CAM, SALIENCY)


@dataclass(frozen=True)
class Explanation:
    """Where in one image the evidence for one class is.

    Attributes:
        heatmap: ``float32`` array of the image's height and width, 0 (no evidence) to 1.
        kind: :data:`GRAD_CAM` (a feature map's class activation) or :data:`SALIENCY`
            (gradient of the score per input pixel, for backbones without a reachable map).
        class_index: The explained class (the predicted one unless another was asked for).
        class_name: Its name.
        probability: The model's probability of that class for this image.
        layer: The feature map's layer inside the backbone; None for saliency.
    """

    heatmap: np.ndarray
    kind: str
    class_index: int
    class_name: str
    probability: float
    layer: str | None = None


@dataclass(frozen=True)
class _Explainer:
    """The classifier's chain with its backbone replaced by one that also returns the map."""

    before: list[keras.layers.Layer]
    backbone: keras.Model
    after: list[keras.layers.Layer]
    layer: str | None


_EXPLAINERS: weakref.WeakKeyDictionary[keras.Model, _Explainer] = weakref.WeakKeyDictionary()


def feature_map_layer(backbone: keras.Model) -> str | None:
    """The name of the last layer inside ``backbone`` with a 4-D (batch, H, W, C) output, or None."""
    for layer in reversed(backbone.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # a layer used at several places has no one output
            continue
        if len(shape) == 4:
            return layer.name
    return None


def backbone_in(model: keras.Model) -> keras.Model:
    """The classifier's backbone: its last nested functional model (augmentation is Sequential).

    Raises:
        ConfigError: The model has no nested backbone model.
    """
    nested = [
        layer for layer in model.layers
        if isinstance(layer, keras.Model) and not isinstance(layer, keras.Sequential)
    ]
    if not nested:
        raise ConfigError(
            f"Model {model.name} has no backbone model inside, so it cannot be explained.",
            "Explain models trained by the studio (augment, preprocess, backbone, head).",
        )
    return nested[-1]


def _explainer(model: keras.Model) -> _Explainer:
    cached = _EXPLAINERS.get(model)
    if cached is not None:
        return cached
    backbone = backbone_in(model)
    chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    position = chain.index(backbone)
    name = feature_map_layer(backbone)
    outputs = backbone.outputs[0]
    if name is not None:
        outputs = [backbone.get_layer(name).output, outputs]
    swapped = keras.Model(backbone.inputs, outputs, name=f"{backbone.name}_explained")
    explainer = _Explainer(chain[:position], swapped, chain[position + 1:], name)
    _EXPLAINERS[model] = explainer
    return explainer


def _head(layers: list[keras.layers.Layer], features: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Scores (logits when the last layer is a softmax Dense) and probabilities."""
    x = features
    for layer in layers[:-1]:
        x = layer(x, training=False)
    last = layers[-1]
    probabilities = last(x, training=False)
    if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax:
        scores = tf.matmul(x, last.kernel) + (last.bias if last.use_bias else 0.0)
        return scores, probabilities
    return probabilities, probabilities


def _gradients(
    explainer: _Explainer, images: np.ndarray, class_index: int | None
) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor, np.ndarray, np.ndarray]:
    """Gradient of each image's class score w.r.t. the map (or the pixels), and what it used."""
    pixels = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        x = pixels
        for layer in explainer.before:
            x = layer(x, training=False)
        outputs = explainer.backbone(x, training=False)
        feature_map, features = (outputs[0], outputs[1]) if explainer.layer else (None, outputs)
        scores, probabilities = _head(explainer.after, features)
        chosen = np.argmax(probabilities.numpy(), axis=1) if class_index is None else np.full(
            len(images), class_index)
        score = tf.reduce_sum(tf.gather(scores, chosen, axis=1, batch_dims=1))
    target = feature_map if feature_map is not None else pixels
    return tape.gradient(score, target), feature_map, pixels, chosen, probabilities.numpy()


def _normalised(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each map resized to ``size`` (height, width, bilinear) and scaled so its peak is 1."""
    resized = []
    for single in maps.astype(np.float32):
        if single.shape != size:
            single = np.asarray(
                Image.fromarray(single).resize((size[1], size[0]), Image.Resampling.BILINEAR))
        single = np.maximum(single, 0.0)
        peak = float(single.max())
        resized.append(single / peak if peak > 0 else np.zeros_like(single))
    return np.stack(resized).astype(np.float32)


def explain_batch(
    model: keras.Model, class_names: Sequence[str], images: np.ndarray, class_index: int | None = None
) -> list[Explanation]:
    """Explain prepared images (``uint8`` or float, 0-255, the model's input size).

    Args:
        model: A studio classifier (see the module docstring).
        class_names: Label index -> name, as the model's outputs.
        images: ``[N, S, S, 3]`` pixels exactly as :func:`tlcore.report.evaluate.predict` feeds them.
        class_index: The class to explain; None explains each image's predicted class.

    Raises:
        ConfigError: ``class_index`` is not a class of the model, or the model has no backbone.
    """
    if class_index is not None and not 0 <= class_index < len(class_names):
        raise ConfigError(
            f"Class {class_index} is not one of the model's {len(class_names)} classes.",
            f"Pick a class index from 0 to {len(class_names) - 1}, or none for the predicted one.",
        )
    explainer = _explainer(model)
    gradients, feature_map, _, chosen, probabilities = _gradients(explainer, images, class_index)
    if feature_map is None:
        raw, kind = np.max(np.abs(gradients.numpy()), axis=-1), SALIENCY
    else:
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        raw, kind = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1)).numpy(), GRAD_CAM
    heatmaps = _normalised(raw, tuple(images.shape[1:3]))
    return [
        Explanation(heatmap, kind, int(index), str(class_names[index]), float(row[index]), explainer.layer)
        for heatmap, index, row in zip(heatmaps, chosen, probabilities, strict=True)
    ]


def explain(
    model: keras.Model,
    class_names: Sequence[str],
    images: Sequence[ImageInput],
    image_size: int,
    class_index: int | None = None,
) -> list[Explanation]:
    """Explain images (bytes, paths or arrays), decoded and resized exactly as ``predict`` does.

    Raises:
        BadImageError: An image cannot be decoded.
        ConfigError: See :func:`explain_batch`.
    """
    return explain_batch(model, class_names, prepare_images(images, image_size), class_index)


def colourise(heatmap: np.ndarray) -> np.ndarray:
    """A 0..1 heatmap as ``uint8`` RGB: blue (none) through green and yellow to red (most)."""
    h = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0], np.float32)  # red, green, blue peak at 3/4, 1/2, 1/4
    return (np.clip(1.5 - np.abs(4.0 * h - centres), 0.0, 1.0) * 255).astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """The coloured heatmap blended over ``image`` (``uint8`` RGB, any size), as ``uint8`` RGB.

    The heatmap is resized to the image, so an explanation at the model's size can be drawn
    over the original upload.

    Raises:
        ConfigError: ``opacity`` is outside 0 to 1, or ``image`` is not ``H x W x 3``.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ConfigError(f"The overlay opacity must be from 0 to 1; got {opacity!r}.")
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ConfigError(f"The overlay needs an H x W x 3 RGB image; got shape {pixels.shape}.")
    heat = np.asarray(heatmap, np.float32)
    if heat.shape != pixels.shape[:2]:
        heat = np.asarray(Image.fromarray(heat).resize(
            (pixels.shape[1], pixels.shape[0]), Image.Resampling.BILINEAR))
    blended = (1.0 - opacity) * pixels.astype(np.float32) + opacity * colourise(heat).astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def overlay_name(image: str, run_id: str, kind: str) -> str:
    """A safe, distinct PNG name for one image's explanation by one run.

    The image's own name is kept (letters, digits, ``.-_`` only, at most 60 characters) so people
    find their file; a short hash of the path as given keeps ``a/x.png`` and ``b/x.png`` apart.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(image).stem).strip("._")[:60] or "image"
    digest = hashlib.blake2b(image.encode("utf-8", "surrogateescape"), digest_size=3).hexdigest()
    run = re.sub(r"[^A-Za-z0-9_-]+", "_", run_id)
    return f"{stem}-{digest}-{run}-{kind}.png"


def write_overlay(
    folder: Path, image: str, run_id: str, explanation: Explanation, source: str | bytes | None = None
) -> Path:
    """Draw ``explanation`` over the image at its own size and write it (atomically) as a PNG.

    ``image`` names the PNG; ``source`` is what to draw on when the name is not a file (a zip
    member's bytes, read once for the answer), else the file ``image`` itself.

    Raises:
        BadImageError: The image cannot be decoded.
    """
    pixels = load_image(image if source is None else source)
    target = folder / overlay_name(image, run_id, explanation.kind)
    buffer = io.BytesIO()
    Image.fromarray(overlay(pixels, explanation.heatmap)).save(buffer, "PNG")
    return atomic_write(target, buffer.getvalue())
