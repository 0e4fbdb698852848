"""Every catalogue backbone's blocks, checked on the real Keras models (random weights)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from savedmodels import MeanColour

from tlcore.backbones import CATALOGUE, build_backbone
from tlcore.backbones.blocks import Block, backbone_blocks, block_table, layer_groups, layers_for_top_blocks
from tlcore.config import BackboneSpec


def token(pattern: str, template: str = "{0}") -> Callable[[str], str | None]:
    """Layer name -> the block its name says it is in, or None for names that say nothing."""
    compiled = re.compile(pattern)

    def block(name: str) -> str | None:
        found = compiled.search(name)
        return template.format(*found.groups()) if found else None
    return block


# Per backbone: how many blocks it has (architecture facts: 17 inverted residuals and a stem for
# MobileNetV2, 3+4+6+3 bottlenecks and a stem for ResNet50, ...), what its layer names say
# about their block, and names of the stem (first block) and top (last block) layers.
EXPECTED = {
    "mobilenet": (14, token(r"^conv_(?:dw|pw|pad)_(\d+)(?:_|$)", "block_{0}"), "conv1_bn", "conv_pw_13_relu"),
    "mobilenet_v2": (18, token(r"^(block_\d+|expanded_conv)_"), "bn_Conv1", "out_relu"),
    "mobilenet_v3_small": (12, token(r"^(expanded_conv(?:_\d+)?)_"), "conv_bn", "conv_1_bn"),
    "mobilenet_v3_large": (16, token(r"^(expanded_conv(?:_\d+)?)_"), "conv_bn", "conv_1_bn"),
    "efficientnet_b0": (17, token(r"^(block\d[a-z]|stem)_"), "stem_conv", "top_conv"),
    "efficientnet_v2_b0": (22, token(r"^(block\d[a-z]|stem)_"), "stem_conv", "top_conv"),
    "resnet50": (17, token(r"^(conv\d_block\d+)_"), "conv1_conv", "conv5_block3_out"),
    "inception_v3": (12, token(r"^(mixed\d+)$"), None, "mixed10"),
    "vgg16": (5, token(r"^(block\d)_"), "block1_conv1", "block5_pool"),
    "densenet121": (62, token(r"^(conv\d_block\d+|pool[234])_"), "conv1_conv", "relu"),
    "convnext_tiny": (22, token(r"^convnext_tiny_(stem|stage_\d_block_\d|downsampling_block_\d)(?:_|$)"),
                      "convnext_tiny_stem", "layer_normalization"),
    "xception": (14, token(r"^(block\d+)_"), "block1_conv1", "block14_sepconv2_act"),
}


@pytest.fixture(scope="module", params=sorted(CATALOGUE))
def built(request: pytest.FixtureRequest) -> tuple[str, keras.Model]:
    """Each backbone built once for the module, at the smallest size it takes."""
    name = request.param
    size = max(CATALOGUE[name].min_size, 32)
    return name, build_backbone(BackboneSpec(name, weights="none"), size).model


def test_there_is_a_rule_for_every_catalogue_entry() -> None:
    assert set(EXPECTED) == set(CATALOGUE)


def test_blocks_cover_every_layer_once_in_order(built: tuple[str, keras.Model]) -> None:
    name, backbone = built
    blocks = backbone_blocks(backbone, name)
    assert len(blocks) == EXPECTED[name][0]
    assert blocks[0].first == 0 and blocks[-1].last == len(backbone.layers) - 1
    for below, above in zip(blocks, blocks[1:], strict=False):
        assert above.first == below.last + 1
    assert all(block.first <= block.last for block in blocks)
    assert len({block.name for block in blocks}) == len(blocks)


def test_each_block_holds_the_layers_named_after_it(built: tuple[str, keras.Model]) -> None:
    name, backbone = built
    _, rule, stem_layer, top_layer = EXPECTED[name]
    blocks = backbone_blocks(backbone, name)
    where = {layer.name: block.name for block in blocks
             for layer in backbone.layers[block.first:block.last + 1]}
    named = {layer.name: rule(layer.name) for layer in backbone.layers}
    assert all(where[layer] == block for layer, block in named.items() if block is not None)
    if stem_layer is not None:
        assert where[stem_layer] == blocks[0].name
    assert where[top_layer] == blocks[-1].name
    # A block's layers are those named after it, plus unnamed ones: no block is a mere label.
    for block in blocks[1:-1]:
        assert any(named[layer.name] == block.name for layer in backbone.layers[block.first:block.last + 1])


def test_the_top_n_blocks_never_cut_a_block(built: tuple[str, keras.Model]) -> None:
    name, backbone = built
    blocks = backbone_blocks(backbone, name)
    count = len(backbone.layers)
    for n in range(1, len(blocks) + 1):
        top = layers_for_top_blocks(blocks, n)
        assert count - top == blocks[-n].first
        groups = layer_groups(backbone, name, top)
        # One group per block, top first, holding all of the block's layers that train.
        for group, block in zip(groups, reversed(blocks[-n:]), strict=True):
            inside = backbone.layers[block.first:block.last + 1]
            assert group == [layer for layer in inside if layer.trainable_weights
                             and not isinstance(layer, keras.layers.BatchNormalization)]
    assert layers_for_top_blocks(blocks, len(blocks)) == count


def test_the_block_table_counts_what_fine_tuning_trains(built: tuple[str, keras.Model]) -> None:
    name, backbone = built
    table = block_table(backbone, name)
    blocks = backbone_blocks(backbone, name)
    assert [row.name for row in table] == [block.name for block in blocks]
    assert [row.layers for row in table] == [block.size for block in blocks]
    not_batchnorm = [layer for layer in backbone.layers
                     if not isinstance(layer, keras.layers.BatchNormalization)]
    assert sum(row.params for row in table) == params(w for layer in not_batchnorm
                                                      for w in layer.trainable_weights)


def params(weights) -> int:
    return sum(math.prod(weight.shape) for weight in weights)


@pytest.fixture(scope="module")
def mobilenet_v2() -> keras.Model:
    return build_backbone(BackboneSpec("mobilenet_v2", alpha=0.35, weights="none"), 32).model


def test_the_table_does_not_depend_on_what_is_frozen_now(mobilenet_v2: keras.Model) -> None:
    fresh = block_table(mobilenet_v2, "mobilenet_v2")
    mobilenet_v2.trainable = False
    try:
        assert block_table(mobilenet_v2, "mobilenet_v2") == fresh
    finally:
        mobilenet_v2.trainable = True
    top = fresh[-1]
    assert (top.name, top.layers) == ("block_16", 8 + 3)  # the block, and Conv_1, its BN, out_relu


def test_a_raw_layer_count_leaves_a_partial_block_at_the_bottom(mobilenet_v2: keras.Model) -> None:
    blocks = backbone_blocks(mobilenet_v2, "mobilenet_v2")
    top = blocks[-1].size + 3  # block_16 and block_15's project, project_BN and add
    groups = layer_groups(mobilenet_v2, "mobilenet_v2", top)
    assert [[layer.name for layer in group] for group in groups][1:] == [["block_15_project"]]
    assert {layer.name for layer in groups[0]} == {
        "block_16_expand", "block_16_depthwise", "block_16_project", "Conv_1"}
    assert layer_groups(mobilenet_v2, "mobilenet_v2", 0) == []
    everything = layer_groups(mobilenet_v2, "mobilenet_v2", None)
    assert len(everything) == len(blocks)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in everything[0])


def test_unknown_and_hub_backbones_have_no_blocks(tmp_path: Path, mobilenet_v2: keras.Model) -> None:
    assert backbone_blocks(mobilenet_v2, None) == []
    assert backbone_blocks(mobilenet_v2, "resnet50") == []  # names of another family: unknown
    tf.saved_model.save(MeanColour(), str(tmp_path / "hub"))
    hub = build_backbone(BackboneSpec(f"hub:{tmp_path / 'hub'}"), 8).model
    assert backbone_blocks(hub, f"hub:{tmp_path / 'hub'}") == []
    assert block_table(hub, f"hub:{tmp_path / 'hub'}") == []
    assert [[type(layer).__name__ for layer in group] for group in layer_groups(hub, None, 1)] == [
        ["HubBackbone"]]


def test_asking_for_more_blocks_than_there_are_is_a_bug() -> None:
    blocks = [Block("stem", 0, 2), Block("one", 3, 9)]
    assert [layers_for_top_blocks(blocks, n) for n in range(3)] == [0, 7, 10]
    with pytest.raises(ValueError, match="top 3 of 2"):
        layers_for_top_blocks(blocks, 3)
