"""Backbones: the Keras applications catalogue, keras-hub presets and TF Hub models behind one interface.

:func:`build_backbone` turns a :class:`~tlcore.config.BackboneSpec` into a
:class:`ResolvedBackbone`: a feature extractor, the preprocessing layer to put in front of it,
and notes for the run log. Importing this package also registers the custom layers that saved
``.keras`` models refer to (:class:`Preprocess`, :class:`HubBackbone`, and for keras-hub presets
:class:`KerasHubFeatures`, :class:`TokenPool`, :class:`PresetPreprocess`); keras-hub itself is
imported only when one is built or loaded.
"""

from __future__ import annotations

from tlcore.backbones.blocks import BlockInfo
from tlcore.backbones.catalogue import (
    CATALOGUE,
    KERAS_HUB_PRESETS,
    BackboneInfo,
    KerasHubPreset,
    describe_catalogue,
    describe_kerashub_presets,
    expected_weight_file,
    get_backbone_info,
    weights_on_disk,
)
from tlcore.backbones.hub import HubBackbone, build_hub_backbone
from tlcore.backbones.keras_apps import build_keras_backbone, catalogue_block_table
from tlcore.backbones.keras_hub import (
    KerasHubFeatures,
    PresetPreprocess,
    TokenPool,
    build_kerashub_backbone,
    kerashub_block_table,
)
from tlcore.backbones.preprocess import MODES as PREPROCESS_MODES
from tlcore.backbones.preprocess import Preprocess
from tlcore.backbones.resolved import ResolvedBackbone
from tlcore.config import BackboneSpec

__all__ = [
    "CATALOGUE",
    "KERAS_HUB_PRESETS",
    "PREPROCESS_MODES",
    "BackboneInfo",
    "HubBackbone",
    "KerasHubFeatures",
    "KerasHubPreset",
    "Preprocess",
    "PresetPreprocess",
    "ResolvedBackbone",
    "TokenPool",
    "build_backbone",
    "describe_catalogue",
    "describe_kerashub_presets",
    "expected_weight_file",
    "get_backbone_info",
    "weights_on_disk",
]


def build_backbone(spec: BackboneSpec, image_size: int) -> ResolvedBackbone:
    """Builds the backbone ``spec`` names, for square RGB images of side ``image_size``.

    Args:
        spec: A catalogue name, ``hub:URL_OR_FOLDER`` or ``kerashub:PRESET_OR_FOLDER``, a width
            multiplier, and weights: ``imagenet`` (Keras cache first, then a 224 px stand-in for
            MobileNet sizes, then a download; a preset's own weights), ``none`` (random) or the
            path of a weights file.
        image_size: Input side in pixels.

    Raises:
        BackboneError: The spec cannot be built (unknown name, bad alpha or size, a weights
            file for another architecture, an unusable SavedModel or preset folder).
        WeightsUnavailableError: Pretrained weights are neither on disk nor downloadable.
    """
    if spec.is_hub:
        return build_hub_backbone(spec, image_size)
    if spec.is_kerashub:
        return build_kerashub_backbone(spec, image_size)
    return build_keras_backbone(spec, image_size)


def backbone_block_table(spec: BackboneSpec, image_size: int) -> tuple[BlockInfo, ...]:
    """The blocks a backbone can unfreeze, bottom to top, with their parameters: catalogue and
    keras-hub backbones (built once, random weights, nothing read); none for TF Hub models.

    Raises:
        BackboneError: The backbone cannot be built.
    """
    if spec.is_hub:
        return ()
    if spec.is_kerashub:
        return kerashub_block_table(spec, image_size)
    return catalogue_block_table(spec.name, spec.alpha)
