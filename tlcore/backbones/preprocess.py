"""Input preprocessing as a serializable Keras layer.

A ``Lambda`` around ``preprocess_input`` would make saved ``.keras`` models refuse to load in
safe mode, so each Keras mode is written out as a per-channel affine map, which is all any of
them is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tlcore.errors import BackboneError

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])
# Caffe means are per channel in BGR order, on the 0-255 scale.
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


@dataclass(frozen=True)
class _Affine:
    """``y = x[..., channels] * scale + offset``, per channel."""

    scale: np.ndarray
    offset: np.ndarray
    reverse_channels: bool = False


MODES: dict[str, _Affine] = {
    # x / 127.5 - 1: MobileNets, Inception, Xception.
    "tf": _Affine(np.full(3, 1 / 127.5), np.full(3, -1.0)),
    # (x / 255 - mean) / std: DenseNet, EfficientNetV2, ConvNeXt.
    "torch": _Affine(1 / (255.0 * _IMAGENET_STD), -_IMAGENET_MEAN / _IMAGENET_STD),
    # RGB -> BGR, minus the ImageNet mean: ResNet, VGG.
    "caffe": _Affine(np.ones(3), -_CAFFE_MEAN_BGR, reverse_channels=True),
    # x / 255: the TF Hub convention for image inputs.
    "unit": _Affine(np.full(3, 1 / 255.0), np.zeros(3)),
    # Identity: models that rescale inside themselves (EfficientNet).
    "none": _Affine(np.ones(3), np.zeros(3)),
}


@keras.saving.register_keras_serializable(package="tlcore")
class Preprocess(keras.layers.Layer):
    """Maps RGB pixels in [0, 255] to the input range a backbone was trained on.

    Args:
        mode: One of :data:`MODES`: ``tf``, ``torch``, ``caffe``, ``unit`` or ``none``.
        **kwargs: Passed to :class:`keras.layers.Layer` (name, dtype).

    Raises:
        BackboneError: Unknown mode.
    """

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise BackboneError(
                f"Unknown preprocessing mode {mode!r}.", f"Use one of {', '.join(MODES)}."
            )
        self.mode = mode
        self._affine = MODES[mode]

    def call(self, images: Any) -> Any:
        x = keras.ops.cast(images, self.compute_dtype)
        if self._affine.reverse_channels:
            x = keras.ops.flip(x, axis=-1)
        scale = keras.ops.convert_to_tensor(self._affine.scale, dtype=self.compute_dtype)
        offset = keras.ops.convert_to_tensor(self._affine.offset, dtype=self.compute_dtype)
        return x * scale + offset

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}
