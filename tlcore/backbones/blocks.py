"""A catalogue backbone's blocks: the architecture's repeated units, read from Keras' layer names.

Unfreezing "the top 3 blocks" is what people mean when they fine-tune; "the top 57 layers"
can stop halfway through an inverted-residual block, leaving its expansion frozen under a
trainable projection. Each family names its layers after its blocks (MobileNetV2
``block_13_expand``, ResNet ``conv5_block3_2_conv``, EfficientNet ``block6a_se_reduce``), so a
pattern per family maps a layer to its block. Keras lists a functional model's layers by
depth, so every block's layers sit together in ``backbone.layers``.

Layers the pattern does not name are placed by position:

* Anonymous layers (``re_lu_7``, Xception's shortcut ``conv2d_94``) join the block of the
  named layer before them: Keras creates them inside that block.
* Layers before the first block form a ``"stem"`` block when any of them holds weights
  (ResNet's ``conv1``, MobileNetV2's ``Conv1``): the stem's generic edge filters are what one
  keeps frozen longest, so "every block but the stem" is a choice worth having. An input layer
  alone joins the first block (VGG16, Xception, whose ``block1`` is its stem).
* Layers after the last block (MobileNetV2's ``Conv_1``, EfficientNet's ``top_conv``,
  DenseNet's final ``bn``) join the last block: they only project its output for the head,
  and unfreezing the top block should reach real features, not a lone 1x1 convolution.

InceptionV3 names only the concatenation that ends each block (``mixed0`` ... ``mixed10``); its
other layers are numbered by a process-wide counter. There a block runs up to its ``mixedN``,
and the stem up to the first layer whose output feeds several branches.

keras-hub presets (``kerashub:`` names) are told apart by their layer names instead of a
catalogue family: ResNet-style stages (``stack2_block3_...``, also DenseNet's), EfficientNet's
``block6a_...``, VGG's ``block3_...``, and the transformer layers of a ViT
(``transformer_block_7``, laid out by :class:`~tlcore.backbones.keras_hub.KerasHubFeatures`).
The first rule that names any layer is used; other families (Swin, DeiT, MobileNetV3) have none.

TF Hub models and unknown architectures have no blocks; they keep raw layer counts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import keras

from tlcore.backbones.catalogue import CATALOGUE, KERAS_HUB_PREFIX

STEM = "stem"


@dataclass(frozen=True)
class Block:
    """Layers ``first`` to ``last`` (inclusive) of ``backbone.layers``, counted from the bottom."""

    name: str
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class BlockInfo:
    """One row of the block table.

    Attributes:
        name: The block's name (``block_16``, ``conv5_block3``, ``stem``).
        layers: Its layers.
        params: Parameters that train when it is unfrozen for fine-tuning; BatchNorm's are
            left out, as fine-tuning keeps BatchNorm frozen.
    """

    name: str
    layers: int
    params: int


@dataclass(frozen=True)
class _Rule:
    """How one family names its blocks.

    Attributes:
        pattern: Matches the names of a block's layers; ``template`` formats its groups into
            the block's name.
        template: The block's name from the pattern's groups.
        closing: Matching layers end their block instead of naming all of its layers.
    """

    pattern: re.Pattern[str]
    template: str = "{0}"
    closing: bool = False

    def block_of(self, layer_name: str) -> str | None:
        found = self.pattern.match(layer_name)
        return self.template.format(*found.groups()) if found else None


_RULES: dict[str, _Rule] = {
    "mobilenet": _Rule(re.compile(r"conv_(?:dw|pw|pad)_(\d+)(?:_|$)"), "block_{0}"),
    "mobilenet_v2": _Rule(re.compile(r"(expanded_conv|block_\d+)_")),
    "mobilenet_v3": _Rule(re.compile(r"(expanded_conv(?:_\d+)?)_")),
    "efficientnet": _Rule(re.compile(r"(stem|block\d+[a-z])_")),
    "efficientnet_v2": _Rule(re.compile(r"(stem|block\d+[a-z])_")),
    "resnet": _Rule(re.compile(r"(conv\d+_block\d+)_")),
    "densenet": _Rule(re.compile(r"(conv\d+_block\d+|pool[2-9])_")),
    "inception": _Rule(re.compile(r"(mixed\d+)$"), closing=True),
    "xception": _Rule(re.compile(r"(block\d+)_")),
    "vgg": _Rule(re.compile(r"(block\d+)_")),
    "convnext": _Rule(re.compile(r"convnext_[a-z]+_(stem|stage_\d+_block_\d+|downsampling_block_\d+)")),
}


_KERAS_HUB_RULES = (
    _Rule(re.compile(r"(stack\d+_block\d+)_")),
    _Rule(re.compile(r"(block\d+[a-z])_")),
    _Rule(re.compile(r"(block\d+)_")),
    _Rule(re.compile(r"(transformer_block_\d+)$")),
)
"""keras-hub backbones' block names, tried in order (see the module docstring)."""


def backbone_blocks(backbone: keras.Model, catalogue_name: str | None) -> list[Block]:
    """The backbone's blocks, bottom to top, covering every layer once.

    Args:
        backbone: The model that :func:`tlcore.backbones.build_backbone` built.
        catalogue_name: Its catalogue name or ``kerashub:`` name; ``None`` or a ``hub:`` name for
            TF Hub models.

    Returns:
        The blocks; empty for TF Hub models, architectures outside the catalogue, and layer
        names that no longer follow the family's pattern (a changed Keras).
    """
    if (catalogue_name or "").startswith(KERAS_HUB_PREFIX):
        return _keras_hub_blocks(backbone)
    info = CATALOGUE.get(catalogue_name or "")
    rule = _RULES.get(info.family) if info else None
    if rule is None:
        return []
    layers = backbone.layers
    names = _closing_names(layers, rule) if rule.closing else _named_blocks(layers, rule)
    return (_as_blocks(names) if names is not None else None) or []


def _keras_hub_blocks(backbone: keras.Model) -> list[Block]:
    """The blocks of a keras-hub backbone by the first of :data:`_KERAS_HUB_RULES` that names a layer."""
    for rule in _KERAS_HUB_RULES:
        names = _named_blocks(backbone.layers, rule)
        if names is not None:
            return _as_blocks(names) or []
    return []


def _named_blocks(layers: list[keras.layers.Layer], rule: _Rule) -> list[str] | None:
    """Each layer's block name when every block's layers carry its name."""
    named = [rule.block_of(layer.name) for layer in layers]
    first = next((i for i, name in enumerate(named) if name is not None), None)
    if first is None:
        return None
    stem = STEM if any(layer.weights for layer in layers[:first]) else named[first]
    blocks, current = [], stem
    for name in named:
        current = name or current
        blocks.append(current)
    return blocks


def _closing_names(layers: list[keras.layers.Layer], rule: _Rule) -> list[str] | None:
    """Each layer's block name when only a block's last layer carries it (InceptionV3)."""
    ends = [(i, name) for i, layer in enumerate(layers) if (name := rule.block_of(layer.name))]
    if not ends:
        return None
    stem_end = _first_fan_out(layers)
    blocks = [STEM] * (stem_end + 1)
    start = stem_end + 1
    for end, name in ends:
        blocks += [name] * (end + 1 - start)
        start = end + 1
    return blocks + [ends[-1][1]] * (len(layers) - start)


def _first_fan_out(layers: list[keras.layers.Layer]) -> int:
    """Index of the first layer whose output several layers read: where a stem meets branches."""
    readers: dict[int, int] = {}
    for layer in layers[1:]:
        for tensor in keras.tree.flatten(layer.input):
            readers[id(tensor)] = readers.get(id(tensor), 0) + 1
    return next((i for i, layer in enumerate(layers) if readers.get(id(layer.output), 0) > 1), 0)


def _as_blocks(names: list[str]) -> list[Block] | None:
    """Runs of equal names as blocks; ``None`` when a name comes back after another block."""
    blocks: list[Block] = []
    for index, name in enumerate(names):
        if blocks and blocks[-1].name == name:
            blocks[-1] = Block(name, blocks[-1].first, index)
        elif any(block.name == name for block in blocks):
            return None
        else:
            blocks.append(Block(name, index, index))
    return blocks


def layers_for_top_blocks(blocks: list[Block], n: int) -> int:
    """The ``trainable_top`` (layers counted from the top) that covers exactly the top ``n`` blocks.

    Raises:
        ValueError: ``n`` is negative or more than there are blocks.
    """
    if not 0 <= n <= len(blocks):
        raise ValueError(f"Asked for the top {n} of {len(blocks)} blocks.")
    return 0 if n == 0 else blocks[-1].last - blocks[-n].first + 1


def layer_groups(
    backbone: keras.Model, catalogue_name: str | None, trainable_top: int | None
) -> list[list[keras.layers.Layer]]:
    """The layers that train under ``trainable_top``, grouped by block, top block first.

    A raw layer count that cuts a block leaves a partial group at the bottom. Without known
    blocks (TF Hub) the trainable layers form one group. Only layers that train are listed:
    layers without trainable weights, and BatchNorm unless every layer trains (``None``, as
    :class:`tlcore.training.model.FreezePolicy` does), would be groups that learn nothing.
    """
    layers = backbone.layers
    first = 0 if trainable_top is None else len(layers) - min(trainable_top, len(layers))
    blocks = backbone_blocks(backbone, catalogue_name) or [Block("all", 0, len(layers) - 1)]
    groups = []
    for block in reversed(blocks):
        if block.last < first:
            break
        members = [layer for layer in layers[max(block.first, first):block.last + 1]
                   if _trains(layer, batchnorm=trainable_top is None)]
        if members:
            groups.append(members)
    return groups


def block_table(backbone: keras.Model, catalogue_name: str | None) -> list[BlockInfo]:
    """Each block's name, layer count and fine-tuning parameters, bottom to top.

    Reads shapes only, so it is instant once the backbone is built; the sum of the last ``n``
    rows' ``params`` is what unfreezing the top ``n`` blocks trains. Empty without blocks.
    """
    layers = backbone.layers
    return [
        BlockInfo(block.name, block.size,
                  sum(_params(layer) for layer in layers[block.first:block.last + 1]
                      if not isinstance(layer, keras.layers.BatchNormalization)))
        for block in backbone_blocks(backbone, catalogue_name)
    ]


def _trains(layer: keras.layers.Layer, batchnorm: bool) -> bool:
    return _params(layer) > 0 and (batchnorm or not isinstance(layer, keras.layers.BatchNormalization))


def _params(layer: keras.layers.Layer) -> int:
    """Parameters the layer trains when unfrozen, whatever its ``trainable`` flag says now.

    A frozen layer's ``trainable_weights`` is empty, so this reads the variables Keras made
    trainable when it created them (``_trainable_variables``, which its ``trainable`` setter
    switches); moving statistics and other state are never among them.
    """
    seen: dict[int, int] = {}
    for sublayer in layer._flatten_layers():
        for variable in sublayer._trainable_variables:
            seen[id(variable)] = math.prod(variable.shape)
    return sum(seen.values())
