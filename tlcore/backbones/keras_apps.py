"""Building catalogue backbones: random, ImageNet (cache, 224 px stand-in, download) or a file."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from pathlib import Path

import keras
from keras.src.backend import config as keras_config

from tlcore.backbones.blocks import BlockInfo, block_table
from tlcore.backbones.catalogue import (
    FALLBACK_SIZE,
    BackboneInfo,
    cached_file_state,
    check_image_size,
    expected_weight_file,
    fallback_weight_file,
    get_backbone_info,
    resolve_alpha,
)
from tlcore.backbones.preprocess import Preprocess
from tlcore.backbones.resolved import ResolvedBackbone
from tlcore.config import BackboneSpec
from tlcore.errors import BackboneError, WeightsUnavailableError, brief_reason
from tlcore.paths import keras_models_dir, resolve_weights_path

# Families whose Keras constructor can leave out its built-in rescaling. It is left out so
# that the Preprocess layer is the one place where pixels are scaled, as for every other
# family; the rescaling layers hold no weights, so ImageNet files load either way.
_PREPROCESSING_SWITCH = frozenset({"mobilenet_v3", "efficientnet_v2", "convnext"})

_KERAS_HOME_LOCK = threading.Lock()

_Built = tuple[keras.Model, str, list[str]]
SMALL_SIZE = 96
"""Input side of the models built only to count their blocks' parameters."""


def build_keras_backbone(spec: BackboneSpec, image_size: int) -> ResolvedBackbone:
    """Builds a catalogue backbone without its top, for ``image_size`` square RGB images.

    Args:
        spec: Catalogue name, width multiplier and weights (``imagenet``, ``none`` or a path).
        image_size: Input side in pixels.

    Raises:
        BackboneError: Unknown name, invalid alpha, image too small, or a weights file that is
            missing, outside the allowed folders or belongs to another architecture.
        WeightsUnavailableError: ImageNet weights are neither cached nor downloadable.
    """
    info = get_backbone_info(spec.name)
    alpha = resolve_alpha(info, spec.alpha)
    check_image_size(info, image_size)
    if spec.weights == "none":
        model, loaded, notes = _construct(info, alpha, image_size, None), "random", []
    elif spec.weights == "imagenet":
        model, loaded, notes = _imagenet(info, alpha, image_size)
    else:
        model, loaded, notes = _from_file(info, alpha, image_size, spec.weights)
    return ResolvedBackbone(
        model=model,
        preprocess=Preprocess(info.preprocess),
        info=info,
        notes=notes,
        weights_loaded=loaded,
    )


def _construct(
    info: BackboneInfo, alpha: float | None, image_size: int, weights: str | None
) -> keras.Model:
    kwargs: dict[str, object] = {
        "include_top": False,
        "weights": weights,
        "input_shape": (image_size, image_size, 3),
    }
    if alpha is not None:
        kwargs["alpha"] = alpha
    if info.family in _PREPROCESSING_SWITCH:
        kwargs["include_preprocessing"] = False
    return getattr(keras.applications, info.constructor)(**kwargs)


@contextlib.contextmanager
def _keras_home(home: Path) -> Iterator[None]:
    """Makes Keras look up and download weights under ``home`` for the duration.

    Keras reads ``$KERAS_HOME`` once, at import, and offers no setter; tlcore reads it on
    every call (tests and workers point it elsewhere after importing Keras). Without this,
    Keras could read another cache than the one ``weights_on_disk`` checked and errors name.
    """
    with _KERAS_HOME_LOCK:
        previous = keras_config._KERAS_DIR
        keras_config._KERAS_DIR = str(home)
        try:
            yield
        finally:
            keras_config._KERAS_DIR = previous


def _imagenet(info: BackboneInfo, alpha: float | None, image_size: int) -> _Built:
    cache = keras_models_dir()
    expected = expected_weight_file(info.name, alpha, image_size)
    state = cached_file_state(expected)
    if state == "usable":
        try:
            with _keras_home(cache.parent):
                model = _construct(info, alpha, image_size, "imagenet")
        except (ValueError, OSError, KeyError) as exc:
            raise _not_weights_for(cache / expected, info, alpha, exc) from exc
        return model, str(cache / expected), _size_notes(info, image_size)

    fallback = fallback_weight_file(info.name, alpha, image_size)
    if fallback and cached_file_state(fallback) == "usable":
        model = _construct(info, alpha, image_size, None)
        _load_weights(model, cache / fallback, info, alpha)
        note = (
            f"{expected} is not in {cache}; loaded the {FALLBACK_SIZE} px no-top weights "
            f"{fallback} instead (without the top, the convolution weights do not depend on "
            "the input size)."
        )
        return model, str(cache / fallback), [note]

    if state == "bad-checksum":
        # Keras would try to download over it, and delete it when the download fails.
        raise WeightsUnavailableError(
            f"{cache / expected} does not match the checksum Keras expects for "
            f"{_describe(info, alpha)} ImageNet weights.",
            "Replace it with the original Keras file of that name, or delete it so that it "
            "can be downloaded again.",
        )
    try:
        with _keras_home(cache.parent):
            model = _construct(info, alpha, image_size, "imagenet")
    except Exception as exc:  # Keras raises a bare Exception when the download fails.
        raise WeightsUnavailableError(
            f"ImageNet weights for {_describe(info, alpha)} at {image_size} px are not on disk "
            f"and could not be downloaded ({brief_reason(exc)}).",
            f"Put {expected} into {cache} (the Keras cache, $KERAS_HOME/models), "
            "or use weights 'none' or a weights file.",
        ) from exc
    notes = [f"Downloaded {expected} into {cache}.", *_size_notes(info, image_size)]
    return model, str(cache / expected), notes


def _size_notes(info: BackboneInfo, image_size: int) -> list[str]:
    """Says when Keras itself substituted the 224 px file for a size it has no file for."""
    if info.weight_sizes and image_size not in info.weight_sizes:
        return [
            f"Keras has no {info.title} ImageNet file for {image_size} px; it loaded the "
            f"{FALLBACK_SIZE} px weights, which fit any size without the top."
        ]
    return []


def _from_file(info: BackboneInfo, alpha: float | None, image_size: int, location: str) -> _Built:
    path = resolve_weights_path(location)
    if not path.is_file():
        raise BackboneError(
            f"Weights file {path} does not exist.",
            "Use 'imagenet', 'none' or the path of a weights file saved from the same backbone.",
        )
    model = _construct(info, alpha, image_size, None)
    _load_weights(model, path, info, alpha)
    return model, str(path), []


def _load_weights(model: keras.Model, path: Path, info: BackboneInfo, alpha: float | None) -> None:
    try:
        model.load_weights(str(path))
    except (ValueError, OSError, KeyError) as exc:
        raise _not_weights_for(path, info, alpha, exc) from exc


def _not_weights_for(
    path: Path, info: BackboneInfo, alpha: float | None, exc: Exception
) -> BackboneError:
    """Keras' load failures (shape or layer mismatch, not HDF5) in the user's terms."""
    return BackboneError(
        f"{path} does not hold weights for {_describe(info, alpha)}: {brief_reason(exc)}",
        "Use a file saved from the same backbone and alpha (model.save_weights), "
        "or weights 'imagenet' or 'none'.",
    )


def _describe(info: BackboneInfo, alpha: float | None) -> str:
    return info.title if alpha is None else f"{info.title} (alpha {alpha})"


@functools.lru_cache(maxsize=32)
def catalogue_block_table(name: str, alpha: float | None) -> tuple[BlockInfo, ...]:
    """Blocks of a catalogue backbone with their parameter counts, bottom to top, for a form.

    Built once per name and width with random weights at a small input: the counts depend on
    neither, and no weights file is read.

    Raises:
        BackboneError: Unknown name or width.
    """
    info = get_backbone_info(name)
    model = _construct(info, resolve_alpha(info, alpha), max(info.min_size, SMALL_SIZE), None)
    return tuple(block_table(model, name))
