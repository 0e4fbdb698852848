"""A random but well-conditioned backbone for tests that need non-degenerate features.

A freshly initialised MobileNetV2 has BatchNorm statistics of 0 and 1, so its features shrink
to ~1e-11 through the blocks and every comparison of them passes trivially. One pass over real
images in training mode with momentum 0 sets each BatchNorm layer's statistics to what it sees,
which keeps activations at unit scale, as in a trained network.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from tlcore.backbones import build_backbone
from tlcore.config import BackboneSpec


def calibrated_weights(images: np.ndarray, path: Path, alpha: float = 0.35) -> Path:
    keras.utils.set_random_seed(1)
    resolved = build_backbone(BackboneSpec("mobilenet_v2", alpha, "none"), images.shape[1])
    batchnorms = [layer for layer in resolved.model.layers
                  if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batchnorms:
        layer.momentum = 0.0
    resolved.model(resolved.preprocess(images.astype("float32")), training=True)
    target = path / "calibrated_mobilenet_v2.weights.h5"
    resolved.model.save_weights(target)
    return target
