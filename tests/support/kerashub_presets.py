"""Tiny keras-hub presets for tests, saved by the tests themselves (random weights, no network).

Each is a real keras-hub backbone built with small arguments and written with keras-hub's own
``save_to_preset``, with an image converter beside it, so loading goes through keras-hub's
preset loader exactly as a downloaded preset does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
import keras_hub
from kagglehub.cache import Cache
from kagglehub.handle import parse_model_handle

# ImageNet mean and standard deviation, as keras-hub's ResNet converters apply them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
TORCH_SCALE = tuple(1 / (255 * s) for s in STD)
TORCH_OFFSET = tuple(-m / s for m, s in zip(MEAN, STD, strict=True))


def tiny_resnet(folder: Path, seed: int = 1) -> Path:
    """A two-stage basic-block ResNet (about 0.1 M parameters) with an ImageNet-style converter."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
    )
    backbone.save_to_preset(str(folder))
    converter = keras_hub.layers.ResNetImageConverter(image_size=(224, 224), scale=list(TORCH_SCALE),
                                                      offset=list(TORCH_OFFSET))
    converter.save_to_preset(str(folder))
    return folder


def tiny_vit(folder: Path, size: int = 48, seed: int = 2) -> Path:
    """A two-layer ViT with 12 px patches at ``size`` px, scaling pixels to [-1, 1]."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(image_shape=(size, size, 3), patch_size=12, num_layers=2,
                                            num_heads=2, hidden_dim=16, mlp_dim=32)
    backbone.save_to_preset(str(folder))
    keras_hub.layers.ViTImageConverter(image_size=(size, size), scale=1 / 127.5, offset=-1.0).save_to_preset(
        str(folder))
    return folder


def put_in_kagglehub_cache(folder: Path, handle: str) -> Path:
    """Copy a preset folder into kagglehub's cache as ``handle``'s files, each marked complete.

    That is what keras-hub leaves behind after downloading a preset on a machine with internet,
    written through kagglehub's own cache object, so it honours ``$KAGGLEHUB_CACHE``.
    """
    parsed, cache = parse_model_handle(handle.removeprefix("kaggle://")), Cache()
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        target = Path(cache.get_path(parsed, file.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, target)
        cache.mark_as_complete(parsed, file.name)
    return Path(cache.get_path(parsed))


def saved_presets(folder: Path) -> Path:
    """``folder`` with a tiny ResNet in ``resnet/`` and a tiny ViT (48 px) in ``vit/``."""
    tiny_resnet(folder / "resnet")
    tiny_vit(folder / "vit")
    return folder


def offline_kagglehub(monkeypatch, cache: Path, allowed: Path) -> None:
    """An empty kagglehub cache, downloads that fail at once, and ``allowed`` among the data roots.

    ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` sends kagglehub's requests to ``http://localhost``,
    where nothing answers: a machine without internet, on any machine, in milliseconds.
    """
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("TL_DATA_ROOT", os.pathsep.join([os.environ["TL_DATA_ROOT"], str(allowed)]))
