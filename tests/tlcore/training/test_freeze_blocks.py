"""Fine-tuning by whole blocks, on a real MobileNetV2 with random weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from savedmodels import MeanColour
from specs import TINY_SIZE, tiny_spec

from tlcore.backbones import build_backbone
from tlcore.config import BackboneSpec, RunSpec
from tlcore.errors import ConfigError
from tlcore.training.model import FreezePolicy, backbone_of, build_classifier
from tlcore.training.stages import plan_stages

NAME = "mobilenet_v2"
TOP = ("Conv_1", "Conv_1_bn", "out_relu")  # after block_16: they join it


def finetune_spec(**train) -> RunSpec:
    return tiny_spec("finetune", **train)


@pytest.fixture(scope="module")
def classifier() -> keras.Model:
    # Seeded: some random initialisations leave the head's kernel without any gradient (the
    # signal dies in the frozen BatchNorm layers, see below); run alone, unseeded, it failed.
    keras.utils.set_random_seed(3)
    spec = finetune_spec()
    resolved = build_backbone(spec.backbone, TINY_SIZE)
    return build_classifier(resolved, 3, TINY_SIZE, spec.train)


def trainable_names(backbone: keras.Model) -> set[str]:
    return {layer.name for layer in backbone.layers if layer.trainable and layer.trainable_weights}


def in_blocks(backbone: keras.Model, prefixes: tuple[str, ...]) -> set[str]:
    """Layers with weights that the block prefixes name, BatchNorm left out (it stays frozen)."""
    return {layer.name for layer in backbone.layers
            if layer.name.startswith(prefixes) and layer.weights
            and not isinstance(layer, keras.layers.BatchNormalization)}


def test_the_top_two_blocks_unfreeze_exactly_block_15_and_block_16(classifier: keras.Model) -> None:
    backbone = backbone_of(classifier)
    spec = finetune_spec(fine_tune_blocks=2, fine_tune_layers=5)  # blocks win over layers
    policy = plan_stages(spec.train, backbone, NAME)[0].policy
    policy.apply(backbone)

    assert trainable_names(backbone) == in_blocks(backbone, ("block_15_", "block_16_", *TOP))
    assert policy.trainable_top == sum(layer.name.startswith(("block_15_", "block_16_", *TOP))
                                       for layer in backbone.layers)
    assert not any(layer.trainable for layer in backbone.layers
                   if isinstance(layer, keras.layers.BatchNormalization))
    assert policy.blocks == ("block_15", "block_16")
    assert policy.describe() == (f"top 2 backbone blocks trainable (block_15 to block_16, "
                                 f"{policy.trainable_top} layers)")


def test_one_block_and_every_block(classifier: keras.Model) -> None:
    backbone = backbone_of(classifier)
    one = FreezePolicy.for_finetune(backbone, None, 0.25, blocks=1, catalogue_name=NAME)
    one.apply(backbone)
    assert trainable_names(backbone) == in_blocks(backbone, ("block_16_", *TOP))

    every = FreezePolicy.for_finetune(backbone, None, 0.25, blocks=18, catalogue_name=NAME)
    every.apply(backbone)
    assert every.trainable_top == len(backbone.layers)
    assert trainable_names(backbone) == in_blocks(backbone, ("",))  # Conv1 of the stem too


def test_without_blocks_layers_and_fraction_work_as_before(classifier: keras.Model) -> None:
    backbone = backbone_of(classifier)
    assert plan_stages(finetune_spec(fine_tune_layers=5).train, backbone, NAME)[0].policy == FreezePolicy(5)
    by_fraction = plan_stages(finetune_spec(fine_tune_fraction=0.5).train, backbone, NAME)[0].policy
    assert by_fraction == FreezePolicy(len(backbone.layers) // 2)
    assert by_fraction.describe() == f"top {len(backbone.layers) // 2} backbone layers trainable"


def test_both_stages_of_frozen_then_finetune(classifier: keras.Model) -> None:
    spec = tiny_spec("frozen_then_finetune", fine_tune_epochs=1, fine_tune_blocks=3)
    frozen, finetune = plan_stages(spec.train, backbone_of(classifier), NAME)
    assert frozen.policy == FreezePolicy(0)
    assert finetune.policy.blocks == ("block_14", "block_15", "block_16")


def test_more_blocks_than_the_backbone_has_are_refused(classifier: keras.Model) -> None:
    with pytest.raises(ConfigError, match="has 18 blocks") as caught:
        plan_stages(finetune_spec(fine_tune_blocks=19).train, backbone_of(classifier), NAME)
    assert "at most 18" in caught.value.hint


def test_blocks_of_a_tf_hub_model_are_refused_with_a_hint(tmp_path: Path) -> None:
    tf.saved_model.save(MeanColour(), str(tmp_path / "hub"))
    name = f"hub:{tmp_path / 'hub'}"
    backbone = build_backbone(BackboneSpec(name), 8).model
    with pytest.raises(ConfigError, match="no known blocks") as caught:
        plan_stages(finetune_spec(fine_tune_blocks=1).train, backbone, name)
    assert "fine-tune layers" in caught.value.hint
    # A frozen run does not fine-tune, so a leftover blocks setting does not stop it.
    frozen = dataclasses.replace(finetune_spec(fine_tune_blocks=1).train, strategy="frozen")
    assert plan_stages(frozen, backbone, name)[0].policy == FreezePolicy(0)


def test_fitting_trains_only_the_unfrozen_blocks_and_keeps_statistics(classifier: keras.Model) -> None:
    backbone = backbone_of(classifier)
    plan_stages(finetune_spec(fine_tune_blocks=2).train, backbone, NAME)[0].policy.apply(backbone)
    expected = {w.path for name in in_blocks(backbone, ("block_15_", "block_16_", *TOP))
                for w in backbone.get_layer(name).weights}
    head = {w.path for w in classifier.get_layer("classifier").weights}
    assert {w.path for w in classifier.trainable_weights} == expected | head

    # Random weights shrink the signal through the frozen BatchNorm layers until the unfrozen
    # convolutions' gradients vanish, so their values are not compared; which variables the
    # optimizer updates is the set above. What fit must not change is compared.
    watched = ("block_14_project", "block_16_project_BN", "Conv_1_bn", "classifier")
    before = {name: [w.numpy().copy() for w in layer_named(classifier, name).weights] for name in watched}
    classifier.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    images = np.random.default_rng(1).uniform(0, 255, (8, TINY_SIZE, TINY_SIZE, 3)).astype("float32")
    classifier.fit(images, np.eye(3)[np.arange(8) % 3], batch_size=4, epochs=1, verbose=0)

    def changed(name: str) -> list[bool]:
        after = layer_named(classifier, name).weights
        return [not np.array_equal(old, new.numpy()) for old, new in zip(before[name], after, strict=True)]
    assert changed("classifier") == [True, True]
    assert changed("block_14_project") == [False]
    # BatchNorm inside the unfrozen blocks ran in inference mode: gamma, beta, moving mean and
    # variance all as they were (training mode would have moved the statistics).
    assert changed("block_16_project_BN") == changed("Conv_1_bn") == [False] * 4


def layer_named(classifier: keras.Model, name: str) -> keras.layers.Layer:
    backbone = backbone_of(classifier)
    return classifier.get_layer(name) if name == "classifier" else backbone.get_layer(name)
