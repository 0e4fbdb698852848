"""Classifier = augmentation -> preprocessing -> backbone -> head, and how it is frozen.

A pretrained backbone's BatchNorm layers always run in inference mode: their moving statistics
never change, even when the layers around them are unfrozen. Without that, fine-tuning on small
data wrecks the pretrained statistics (the Keras transfer-learning recipe). Calling the backbone
with ``training=False`` is not enough in Keras 3: a functional model passes the outer
``training=True`` of ``fit`` down to every nested call. A BatchNormalization layer with
``trainable=False`` does run in inference mode, so :class:`FreezePolicy` keeps them untrainable.
A scratch backbone has no statistics worth keeping, and freezing BatchNorm at its initial values
would cripple the baseline, so scratch trains BatchNorm normally.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras

from tlcore.backbones import Preprocess, ResolvedBackbone
from tlcore.backbones.blocks import backbone_blocks, layers_for_top_blocks
from tlcore.config import TrainSpec
from tlcore.errors import ConfigError

BACKBONE_LAYER = "backbone"
HEAD_LAYERS = ("pool", "dropout", "hidden", "classifier")

AUGMENTATION_FACTORIES: dict[str, Callable[[int], keras.layers.Layer]] = {
    "flip": lambda seed: keras.layers.RandomFlip("horizontal", seed=seed),
    "rotation": lambda seed: keras.layers.RandomRotation(0.08, seed=seed),
    "zoom": lambda seed: keras.layers.RandomZoom(0.15, seed=seed),
    "contrast": lambda seed: keras.layers.RandomContrast(0.2, seed=seed),
    "translation": lambda seed: keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
}


def build_augmentation(names: tuple[str, ...], seed: int) -> keras.Sequential | None:
    """Random augmentation layers; Keras activates them only while training."""
    if not names:
        return None
    return keras.Sequential(
        [AUGMENTATION_FACTORIES[name](seed + i) for i, name in enumerate(names)],
        name="augment",
    )


@dataclass(frozen=True)
class FreezePolicy:
    """Which backbone layers train.

    Attributes:
        trainable_top: ``None`` trains every layer (scratch), ``0`` freezes the backbone
            (feature extraction), ``n`` unfreezes the top ``n`` layers (fine-tuning).
            BatchNorm layers stay frozen unless every layer trains.
        blocks: The blocks those top layers make up, bottom to top, when fine-tuning was asked
            for by whole blocks (see :mod:`tlcore.backbones.blocks`); empty otherwise.
    """

    trainable_top: int | None
    blocks: tuple[str, ...] = ()

    @classmethod
    def for_finetune(
        cls,
        backbone: keras.Model,
        layers: int | None,
        fraction: float,
        blocks: int | None = None,
        catalogue_name: str | None = None,
    ) -> FreezePolicy:
        """The fine-tuning policy: the top ``blocks`` blocks when given, else by layers or fraction.

        Raises:
            ConfigError: ``blocks`` is given for a backbone without known blocks (TF Hub), or
                is more than the backbone has.
        """
        if blocks is not None:
            return cls.top_blocks(backbone, catalogue_name, blocks)
        count = len(backbone.layers)
        top = layers if layers is not None else math.ceil(fraction * count)
        return cls(trainable_top=max(1, min(top, count)))

    @classmethod
    def top_blocks(cls, backbone: keras.Model, catalogue_name: str | None, count: int) -> FreezePolicy:
        """Unfreezes exactly the top ``count`` blocks.

        A request for more blocks than there are is refused rather than capped: a spec that
        asked for 25 blocks of a backbone with 18 was written for another backbone, and
        quietly unfreezing everything would train far more than its author expected.

        Raises:
            ConfigError: No known blocks, or fewer than ``count``.
        """
        found = backbone_blocks(backbone, catalogue_name)
        if not found:
            raise ConfigError(
                f"Fine-tuning by blocks needs a catalogue backbone; {catalogue_name or 'this backbone'} "
                "has no known blocks.",
                "Unfreeze by fine-tune layers or fine-tune fraction instead, and leave fine-tune "
                "blocks empty.",
            )
        if count > len(found):
            raise ConfigError(
                f"Fine-tune blocks is {count}, but {catalogue_name} has {len(found)} blocks "
                f"({found[0].name} to {found[-1].name}).",
                f"Set fine-tune blocks to at most {len(found)}; {len(found)} unfreezes the whole backbone.",
            )
        chosen = found[len(found) - count:]
        return cls(trainable_top=layers_for_top_blocks(found, count),
                   blocks=tuple(block.name for block in chosen))

    def apply(self, backbone: keras.Model) -> None:
        """Set ``trainable`` on the backbone's layers; recompile afterwards."""
        if self.trainable_top is None:
            backbone.trainable = True
            return
        if self.trainable_top == 0 or len(backbone.layers) <= 1:
            backbone.trainable = self.trainable_top != 0
            return
        backbone.trainable = True
        first_trainable = len(backbone.layers) - self.trainable_top
        for index, layer in enumerate(backbone.layers):
            is_batchnorm = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = index >= first_trainable and not is_batchnorm

    def describe(self) -> str:
        if self.trainable_top is None:
            return "all layers trainable"
        if self.trainable_top == 0:
            return "backbone frozen"
        if self.blocks:
            span = self.blocks[0] if len(self.blocks) == 1 else f"{self.blocks[0]} to {self.blocks[-1]}"
            return (f"top {len(self.blocks)} backbone blocks trainable ({span}, "
                    f"{self.trainable_top} layers)")
        return f"top {self.trainable_top} backbone layers trainable"


def build_classifier(
    backbone: ResolvedBackbone, num_classes: int, image_size: int, train: TrainSpec
) -> keras.Model:
    """The full model, taking float RGB images in [0, 255] of ``image_size`` pixels."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    augmentation = build_augmentation(train.augmentations, train.seed)
    if augmentation is not None:
        x = augmentation(x)
    x = backbone.preprocess(x)
    backbone.model.name = BACKBONE_LAYER
    x = backbone.model(x)
    x = build_head(x, num_classes, train.dropout, train.head_hidden_units)
    return keras.Model(inputs, x, name="classifier")


def build_head(
    features: keras.KerasTensor, num_classes: int, dropout: float, hidden_units: int = 0
) -> keras.KerasTensor:
    """Pooling (for feature maps), dropout, an optional hidden ReLU layer and the softmax layer.

    The softmax layer is float32 under every dtype policy: under mixed precision the layers
    below compute in float16, and probabilities and the loss are kept in full precision.
    """
    if len(features.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    else:
        x = keras.layers.Identity(name="pool")(features)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(x)


def apply_head_after_pool(model: keras.Model, pooled: keras.KerasTensor) -> keras.KerasTensor:
    """The classifier's own layers after pooling (dropout, hidden, softmax) applied to ``pooled``.

    For models that share the head's weights with the classifier, such as a stage trained on
    cached features.
    """
    x = pooled
    for name in HEAD_LAYERS[1:]:
        if any(layer.name == name for layer in model.layers):
            x = model.get_layer(name)(x)
    return x


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_LAYER)


def preprocess_of(model: keras.Model) -> Preprocess:
    """The preprocessing layer (found by type: Keras numbers its name per instance)."""
    return next(layer for layer in model.layers if isinstance(layer, Preprocess))


def count_params(weights: list) -> int:
    return int(sum(math.prod(w.shape) for w in weights))
