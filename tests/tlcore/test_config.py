import dataclasses
import os

import pytest

from tlcore.config import (
    ADDED_LATER,
    AUGMENTATIONS,
    BackboneSpec,
    Bound,
    DatasetSpec,
    RunSpec,
    TrainSpec,
    setting,
    settings,
)
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


BOUNDED = [(spec_class, name, info) for spec_class in (DatasetSpec, BackboneSpec, TrainSpec)
           for name, info in settings(spec_class).items() if info.bound is not None]


def outside(bound: Bound) -> list[float]:
    """Values just past each limit of ``bound`` (the limit itself where it is excluded)."""
    values = []
    if bound.low is not None:
        values.append(bound.low if bound.low_open else bound.low - 1)
    if bound.high is not None:
        values.append(bound.high if bound.high_open else bound.high + 1)
    return values


def test_every_spec_field_declares_its_setting():
    for spec_class in (DatasetSpec, BackboneSpec, TrainSpec):
        assert list(settings(spec_class)) == [f.name for f in dataclasses.fields(spec_class)]
        assert all(info.label for info in settings(spec_class).values())


@pytest.mark.parametrize("spec_class, name, info", BOUNDED, ids=[f"{c.__name__}.{n}" for c, n, _ in BOUNDED])
def test_validate_refuses_each_value_past_a_bound_naming_the_setting(spec_class, name, info):
    for value in [*outside(info.bound), float("nan")]:
        with pytest.raises(ConfigError, match=info.label):
            spec_class(**{name: value}).validate()


@pytest.mark.parametrize("spec_class, name, info", BOUNDED, ids=[f"{c.__name__}.{n}" for c, n, _ in BOUNDED])
def test_the_form_range_and_presets_lie_inside_the_bound_and_the_default_too(spec_class, name, info):
    bound = info.bound
    offered = [bound.form_min, bound.form_max, *bound.presets]
    assert all(bound.contains(v) for v in offered if v is not None)
    default = getattr(spec_class(), name)
    assert default is None or bound.contains(default)


def test_bound_describes_closed_open_and_half_bounded_ranges():
    assert Bound(16, 1024).describe() == "between 16 and 1024"
    assert Bound(0.0, 1.0, low_open=True).describe() == "in (0, 1]"
    assert Bound(0.0, 1.0, high_open=True).describe() == "in [0, 1)"
    assert Bound(0, None).describe() == "at least 0"
    assert Bound(0.0, 1.0, low_open=True, step=0.05).form_min == 0.05
    assert Bound(0.0, 1.0, high_open=True, step=0.05).form_max == 0.95
    assert Bound(0, None, form_high=100).form_max == 100
    assert not Bound(0, 1).contains(float("nan"))


def test_messages_keep_their_words_and_choices_are_named():
    with pytest.raises(ConfigError, match=r"Image size must be between 16 and 1024 pixels, got 0\."):
        DatasetSpec(image_size=0).validate()
    with pytest.raises(ConfigError, match="Unknown strategy: magic. Choose from scratch, frozen"):
        TrainSpec(strategy="magic").validate()
    with pytest.raises(ConfigError, match="Epochs must be a number"):
        TrainSpec(epochs="5").validate()
    assert setting(TrainSpec, "augmentations").choices == AUGMENTATIONS


@pytest.mark.parametrize("spec", [
    RunSpec(dataset=DatasetSpec(source=os.fsdecode(b"folder:/data/caf\xe9"))),
    RunSpec(backbone=BackboneSpec(weights=os.fsdecode(b"/w/\xff.h5"))),
    RunSpec(name=os.fsdecode(b"run \xfe")),
])
def test_text_that_is_not_utf8_is_refused_before_a_run_exists(spec: RunSpec) -> None:
    with pytest.raises(ConfigError, match="not valid UTF-8") as caught:
        spec.validate()
    str(caught.value).encode("utf-8")  # the message itself can be shown anywhere


def test_fields_added_later_leave_the_keys_of_older_runs_alone():
    # The key RunSpec() had before schedules, blocks and oversampling existed: runs stored then
    # must still be found and reused.
    assert RunSpec().key() == "c75b12190a90cc7e"
    defaults = TrainSpec()
    assert ADDED_LATER["train"] == {name: getattr(defaults, name) for name in ADDED_LATER["train"]}
    changed = RunSpec(train=TrainSpec(schedule="cosine"))
    assert changed.key() != RunSpec().key()
    assert RunSpec(train=TrainSpec(oversample=True)).key() not in {RunSpec().key(), changed.key()}


def test_class_weights_and_oversampling_together_are_refused():
    with pytest.raises(ConfigError, match="over-correct"):
        TrainSpec(class_weights=True, oversample=True).validate()
    TrainSpec(class_weights=True).validate()
    TrainSpec(oversample=True).validate()
