import dataclasses

import pytest

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec
from tlcore.errors import ConfigError


def test_key_ignores_name_but_not_settings():
    spec = RunSpec(name="a")
    assert spec.key() == dataclasses.replace(spec, name="b").key()
    other = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=6))
    assert spec.key() != other.key()


def test_round_trip_through_dict_keeps_key():
    spec = RunSpec(train=TrainSpec(augmentations=("flip", "zoom")), name="x")
    again = RunSpec.from_dict(spec.to_dict())
    assert again == spec
    assert again.key() == spec.key()


@pytest.mark.parametrize(
    "spec",
    [
        RunSpec(dataset=DatasetSpec(image_size=0)),
        RunSpec(dataset=DatasetSpec(subset=0)),
        RunSpec(dataset=DatasetSpec(source="ftp:x")),
        RunSpec(dataset=DatasetSpec(val_fraction=0.5, test_fraction=0.5)),
        RunSpec(train=TrainSpec(epochs=-1)),
        RunSpec(train=TrainSpec(strategy="magic")),
        RunSpec(train=TrainSpec(strategy="frozen_then_finetune", fine_tune_epochs=0)),
        RunSpec(train=TrainSpec(augmentations=("blur",))),
        RunSpec(train=TrainSpec(batch_size=0)),
        RunSpec(backbone=BackboneSpec(alpha=-1)),
        RunSpec(train=TrainSpec(strategy="scratch"), backbone=BackboneSpec(weights="imagenet")),
    ],
)
def test_impossible_settings_are_refused(spec):
    with pytest.raises(ConfigError):
        spec.validate()


@pytest.mark.parametrize("source", ["zip:", "folder: ", "tfds:"])
def test_an_empty_source_says_no_dataset_is_chosen(source):
    with pytest.raises(ConfigError, match="No dataset chosen yet"):
        DatasetSpec(source=source).validate()


def test_with_strategy_sets_weights_for_scratch_and_back():
    spec = RunSpec()
    scratch = spec.with_strategy("scratch")
    assert scratch.backbone.weights == "none"
    scratch.validate()
    assert scratch.with_strategy("frozen").backbone.weights == "imagenet"


def test_malformed_dict_is_a_config_error():
    with pytest.raises(ConfigError):
        RunSpec.from_dict({"train": {"epochz": 3}})


def test_total_epochs_counts_second_stage_only_for_two_stage_strategy():
    assert TrainSpec(strategy="frozen_then_finetune", epochs=2, fine_tune_epochs=3).total_epochs == 5
    assert TrainSpec(strategy="frozen", epochs=2, fine_tune_epochs=3).total_epochs == 2
