"""keras-hub image presets as studio backbones: by registered name, or from a preset folder.

keras-hub builds a preset's backbone from its ``config.json`` and weights, and its image
converter says how pixels are scaled. The studio needs three things keras-hub's objects do not
give as they are:

* **One layer per unit that can be frozen.** A ResNet or EfficientNet backbone is a flat
  functional graph already, but a ViT runs all its transformer layers inside one ``ViTEncoder``
  layer. :class:`KerasHubFeatures` lays them out as layers of its own graph, so fine-tuning can
  unfreeze the top transformer layers and a cached stage can cut between two of them.
* **A feature map or vector.** Transformers return tokens; :class:`TokenPool` takes the class
  token (ViT, DeiT, DINOv2) or the mean of the tokens, as keras-hub's classifiers do.
* **A ``.keras`` file that loads in safe mode.** Some keras-hub layers do not rebuild from their
  own config (``ViTPatchingAndEmbedding``, ``ViTEncoderBlock``), so the graph is never saved
  layer by layer: :class:`KerasHubFeatures` saves the keras-hub backbone's config, which
  keras-hub rebuilds, and lays the graph out again on load. Preprocessing is
  :class:`PresetPreprocess`, the converter's per-channel ``x * scale + offset``.

keras-hub is imported only when a preset is built or a saved model needs it: importing it
costs seconds, and most processes never use it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tlcore.backbones.blocks import BlockInfo, block_table
from tlcore.backbones.catalogue import kaggle_cache_folder, preset_cached
from tlcore.backbones.preprocess import Preprocess, _Affine
from tlcore.backbones.resolved import ResolvedBackbone
from tlcore.config import BackboneSpec
from tlcore.errors import BackboneError, WeightsUnavailableError, brief_reason
from tlcore.paths import resolve_weights_path

REQUIREMENT = "keras-hub==0.32.*"
CLASS_TOKEN_FAMILIES = frozenset({"ViTBackbone", "DeiTBackbone", "DINOV2Backbone", "DINOV3Backbone"})
"""Backbones whose first output token is the class token; others' tokens are averaged."""
POOLINGS = ("first", "mean")


def keras_hub_module() -> Any:
    """The ``keras_hub`` package, imported on first need.

    Raises:
        BackboneError: keras-hub is not installed.
    """
    try:
        return importlib.import_module("keras_hub")
    except ImportError as exc:
        raise BackboneError(
            f"keras-hub is not installed, so kerashub: backbones cannot be built ({exc}).",
            f"Install it into the studio's environment: pip install '{REQUIREMENT}'.",
        ) from exc


@keras.saving.register_keras_serializable(package="tlcore")
class TokenPool(keras.layers.Layer):
    """A transformer's tokens ``(batch, tokens, features)`` as one vector per image.

    Args:
        mode: ``first`` takes the class token, ``mean`` averages every token.
        **kwargs: Passed to :class:`keras.layers.Layer`.
    """

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in POOLINGS:
            raise BackboneError(f"Unknown token pooling {mode!r}.", f"Use one of {', '.join(POOLINGS)}.")
        self.mode = mode

    def call(self, tokens: Any) -> Any:
        return tokens[:, 0] if self.mode == "first" else keras.ops.mean(tokens, axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="tlcore")
class PresetPreprocess(Preprocess):
    """``x * scale + offset`` per channel: a keras-hub image converter's settings as a studio layer.

    A subclass of :class:`~tlcore.backbones.Preprocess`, so the model builder, the cached
    stage and explanations find it where they find every backbone's preprocessing.

    Args:
        scale: Per-channel factor (R, G, B) applied to pixels in [0, 255].
        offset: Per-channel value added after scaling.
        **kwargs: Passed to :class:`keras.layers.Layer`; a saved ``mode`` is ignored.
    """

    def __init__(self, scale: Sequence[float], offset: Sequence[float], **kwargs: Any) -> None:
        kwargs.pop("mode", None)
        super().__init__("none", **kwargs)
        self.mode = "preset"
        self.scale = [float(value) for value in scale]
        self.offset = [float(value) for value in offset]
        if len(self.scale) != 3 or len(self.offset) != 3:
            raise BackboneError(f"A preset's scale and offset need one value per channel, got "
                                f"{self.scale} and {self.offset}.", "Save the preset's converter again.")
        self._affine = _Affine(np.array(self.scale), np.array(self.offset))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


@keras.saving.register_keras_serializable(package="tlcore")
class KerasHubFeatures(keras.Model):
    """A keras-hub image backbone laid out as one graph whose layers freeze one by one.

    Args:
        backbone: The keras-hub backbone (a ``keras_hub.models.Backbone``) or its serialized
            config, as :meth:`get_config` stores it; its layers become this model's layers.
        pooling: For backbones that return tokens, how they become a vector (:data:`POOLINGS`);
            ``None`` chooses as keras-hub's classifiers do.
        **kwargs: Passed to :class:`keras.Model` (``name``, ``trainable``).
    """

    def __init__(self, backbone: Any, pooling: str | None = None, **kwargs: Any) -> None:
        source = backbone if isinstance(backbone, keras.Model) else keras.saving.deserialize_keras_object(
            backbone)
        tokens, pooling = _feature_tensor(source, pooling)
        outputs = TokenPool(pooling, name="token_pool")(tokens) if pooling else tokens
        super().__init__(inputs=source.inputs[0], outputs=outputs, **kwargs)
        self.backbone_config = keras.saving.serialize_keras_object(source)
        self.pooling = pooling
        self.family = type(source).__name__

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "trainable": self.trainable, "backbone": self.backbone_config,
                "pooling": self.pooling}


def _feature_tensor(source: keras.Model, pooling: str | None) -> tuple[Any, str | None]:
    """The backbone's output tensor, a ViT's encoder laid out layer by layer, and its pooling."""
    if len(source.inputs) != 1 or len(source.outputs) != 1:
        raise BackboneError(
            f"The keras-hub backbone {type(source).__name__} takes {len(source.inputs)} inputs and returns "
            f"{len(source.outputs)} outputs.",
            "Use an image backbone with one image input and one output (see `python -m tlcore backbones`).",
        )
    output = _vit_tokens(source) if type(source).__name__ == "ViTBackbone" else source.outputs[0]
    if len(output.shape) != 3:
        return output, None
    if pooling is None:
        class_token = type(source).__name__ in CLASS_TOKEN_FAMILIES
        pooling = "first" if class_token and source.get_config().get("use_class_token", True) else "mean"
    return output, pooling


def _vit_tokens(source: keras.Model) -> Any:
    """A ViT's encoder blocks called one after the other on its patch embeddings.

    ``ViTEncoder`` calls its blocks inside its own ``call``, so they belong to no graph yet: here
    each is called once, which makes it a layer of this graph (with the encoder's final layer
    norm), holding the same weights.
    """
    encoder = source.get_layer("vit_encoder")
    tokens = source.get_layer("vit_patching_and_embedding").output
    if encoder.dropout_rate:
        tokens = encoder.dropout(tokens)
    for block in encoder.encoder_layers:
        tokens = block(tokens)
    return encoder.layer_norm(tokens)


def build_kerashub_backbone(spec: BackboneSpec, image_size: int) -> ResolvedBackbone:
    """Builds the backbone of ``spec.name == "kerashub:PRESET_OR_FOLDER"`` for ``image_size`` images.

    Args:
        spec: A registered preset name or a preset folder; weights ``imagenet`` (the preset's
            own) or ``none`` (the same architecture at random, for the scratch strategy).
        image_size: Input side in pixels. Convolutional presets take any size (their weights do
            not depend on it); transformers only the size they were trained at.

    Raises:
        ConfigError: Settings that cannot apply to a preset (alpha, a weights file).
        BackboneError: keras-hub missing, an unknown name, a folder that is not a preset or is
            outside the allowed folders, a preset that is not an image backbone or does not take
            ``image_size`` images.
        WeightsUnavailableError: A named preset that is neither in kagglehub's cache nor
            downloadable (offline).
    """
    spec.validate()
    keras_hub = keras_hub_module()
    preset, weights_id = _locate(spec, keras_hub)
    was_cached = spec.kerashub_folder is not None or preset_cached(weights_id)
    source = _load(keras_hub, preset, spec, weights_id, was_cached)
    sized = _at_size(source, image_size, preset)
    model = KerasHubFeatures(sized, name="kerashub_backbone")
    preprocess, converter_notes = _preprocess(keras_hub, preset, image_size)
    return ResolvedBackbone(
        model=model,
        preprocess=preprocess,
        info=None,
        notes=[_summary(model, spec, weights_id, was_cached), *converter_notes, *_batchnorm_notes(model)],
        weights_loaded=weights_id if spec.weights == "imagenet" else "random",
    )


def _locate(spec: BackboneSpec, keras_hub: Any) -> tuple[str, str]:
    """What keras-hub loads (a folder or a registered name) and what identifies its weights."""
    folder = spec.kerashub_folder
    if folder is not None:
        path = resolve_weights_path(folder)
        if not (path / "config.json").is_file():
            raise BackboneError(
                f"{path} is not a keras-hub preset folder (it has no config.json).",
                "Save one with backbone.save_to_preset(FOLDER) (and the image converter's "
                "save_to_preset into the same folder), or name a registered preset.",
            )
        weights = path / "model.weights.h5"
        return str(path), str(weights if weights.is_file() else path)
    name = spec.kerashub_handle
    registered = keras_hub.models.Backbone.presets
    if name not in registered:
        image = sorted(keras_hub.models.ImageClassifier.presets)
        raise BackboneError(
            f"keras-hub {keras_hub.__version__} has no preset named {name!r}.",
            f"Image presets include {', '.join(image[:6])}, ... ({len(image)} in all, see "
            "docs/backbones.md); or give the full path of a preset folder.",
        )
    return name, registered[name]["kaggle_handle"]


def _load(keras_hub: Any, preset: str, spec: BackboneSpec, weights_id: str, cached: bool) -> keras.Model:
    """keras-hub's ``Backbone.from_preset``, its failures in the user's terms."""
    named = spec.kerashub_folder is None
    try:
        source = keras_hub.models.Backbone.from_preset(preset, load_weights=spec.weights == "imagenet",
                                                       dtype="float32")
    except Exception as exc:  # network, kagglehub, JSON and Keras errors: many types, one meaning each
        if named and not cached:
            raise WeightsUnavailableError(
                f"The keras-hub preset {preset} is not in kagglehub's cache and could not be downloaded "
                f"({brief_reason(exc)}).",
                f"Offline, fetch it on a machine with internet, save it with save_to_preset and copy the "
                f"folder here, then write kerashub:/path/to/folder (docs/backbones.md); or copy "
                f"kagglehub's cache folder {kaggle_cache_folder(weights_id) or '(see KAGGLEHUB_CACHE)'}.",
            ) from exc
        raise BackboneError(
            f"Could not build the keras-hub preset {preset} ({brief_reason(exc)}).",
            "Check that the folder holds a complete preset saved by this keras-hub version.",
        ) from exc
    inputs = source.inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[-1] != 3:
        raise BackboneError(
            f"The keras-hub preset {preset} ({type(source).__name__}) is not an image backbone.",
            "Choose an image preset, such as one listed by `python -m tlcore backbones`.",
        )
    return source


def _at_size(source: keras.Model, image_size: int, preset: str) -> keras.Model:
    """The backbone rebuilt from its own config for ``image_size`` square images, with its weights.

    A fixed input side gives every layer a known output shape, which the feature cache (rows
    of one size) and Grad-CAM need. Convolutions keep their weights at any size; a transformer's
    position embeddings exist for one size only, so it is refused at any other. The rebuild
    happens even at the right size: a saved model is rebuilt from this config, so a config
    that does not give back the preset's weights (a keras-hub bug) is refused now, not when
    the finished run's model fails to load.
    """
    height, width = source.inputs[0].shape[1:3]
    config = source.get_config()
    if (height, width) != (image_size, image_size):
        if height is not None or width is not None:
            raise BackboneError(
                f"The keras-hub preset {preset} takes {height}x{width} images only, not {image_size} px.",
                f"Set the image size to {height}.",
            )
        key = next((key for key in ("image_shape", "input_shape") if key in config), None)
        if key is None:
            raise BackboneError(
                f"The keras-hub preset {preset} does not say which image size it is built for.",
                "Use a preset folder saved with an image_shape, or another preset.",
            )
        config[key] = (image_size, image_size, 3)
    try:
        sized = type(source).from_config(config)
        sized.set_weights(source.get_weights())
    except ValueError as exc:
        raise BackboneError(
            f"keras-hub cannot rebuild the preset {preset} from its config at {image_size} px "
            f"({brief_reason(exc)}).",
            "Try a larger image size (224 is what most were trained at), or another preset.",
        ) from exc
    return sized


def _preprocess(keras_hub: Any, preset: str, image_size: int) -> tuple[Preprocess, list[str]]:
    """The preset's image converter as a :class:`PresetPreprocess`, or [0, 1] scaling without one."""
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except FileNotFoundError:
        return Preprocess("unit"), [f"The preset {preset} has no image converter, so pixels are scaled to "
                                    "[0, 1]; save the converter into its folder if it was trained otherwise."]
    scale, offset = _per_channel(converter.scale, 1.0), _per_channel(converter.offset, 0.0)
    notes = [f"Pixels are scaled as the preset's image converter does: x * ({_numbers(scale)}) + "
             f"({_numbers(offset)}) per channel."]
    trained = converter.image_size
    if trained is not None and tuple(trained) != (image_size, image_size):
        notes.append(f"The preset was trained on {trained[0]}x{trained[1]} images; this run uses "
                     f"{image_size} px (the studio resizes, not the converter).")
    return PresetPreprocess(scale, offset), notes


def _per_channel(value: Any, default: float) -> list[float]:
    values = np.broadcast_to(np.asarray(default if value is None else value, dtype=np.float64), (3,))
    return [float(v) for v in values]


def _numbers(values: list[float]) -> str:
    return ", ".join(f"{value:.4g}" for value in values)


def _summary(model: KerasHubFeatures, spec: BackboneSpec, weights_id: str, was_cached: bool) -> str:
    source = f"weights from {weights_id}"
    if weights_id.startswith("kaggle://"):
        source += " (kagglehub's cache)" if was_cached else " (downloaded into kagglehub's cache)"
    source = "random weights" if spec.weights == "none" else source
    pooled = {"first": "; its class token is the feature vector",
              "mean": "; the mean of its tokens is the feature vector"}.get(model.pooling or "", "")
    return (f"keras-hub {model.family} {spec.kerashub_handle}: {model.count_params():,} parameters, "
            f"{len(model.layers)} layers, {source}{pooled}.")


def _batchnorm_notes(model: keras.Model) -> list[str]:
    """Layers that hold BatchNorm inside them, whose statistics fine-tuning would update."""
    hidden = [layer.name for layer in model.layers
              if not isinstance(layer, keras.layers.BatchNormalization)
              and any(isinstance(inner, keras.layers.BatchNormalization)
                      for inner in layer._flatten_layers(include_self=False))]
    if not hidden:
        return []
    return [f"{len(hidden)} layer(s) hold BatchNorm inside them ({', '.join(hidden[:3])}...): unfreezing "
            "them updates their statistics, which the studio keeps frozen only for BatchNorm layers of "
            "their own."]


def image_classifier_presets() -> list[str]:
    """Every preset keras-hub's ``ImageClassifier`` offers (their backbones are image backbones).

    Raises:
        BackboneError: keras-hub is not installed.
    """
    return sorted(keras_hub_module().models.ImageClassifier.presets)


def kerashub_block_table(spec: BackboneSpec, image_size: int) -> tuple[BlockInfo, ...]:
    """A preset's blocks with their parameter counts, bottom to top, for a form or a spec check.

    Built once per preset, size and (for a folder) version of its ``config.json``, with random
    weights: the counts do not depend on them and no weights file is read. The config is the
    preset's, so a named preset must be in kagglehub's cache (or downloadable).

    Raises:
        BackboneError: The preset cannot be built (see :func:`build_kerashub_backbone`).
    """
    folder = spec.kerashub_folder
    config = resolve_weights_path(folder) / "config.json" if folder is not None else None
    stamp = config.stat().st_mtime_ns if config is not None and config.is_file() else 0
    return _block_table(dataclasses.replace(spec, weights="none"), image_size, stamp)


@functools.lru_cache(maxsize=16)
def _block_table(spec: BackboneSpec, image_size: int, stamp: int) -> tuple[BlockInfo, ...]:
    del stamp  # part of the cache key only
    return tuple(block_table(build_kerashub_backbone(spec, image_size).model, spec.name))
