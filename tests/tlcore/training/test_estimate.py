import dataclasses

import pytest

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec
from tlcore.training.estimate import (
    ANCHOR_FORWARD_IPS,
    ANCHOR_TRAIN_IPS,
    STAGE_START_S,
    estimate_epoch_seconds,
    estimate_run_seconds,
    eta_seconds,
    format_seconds,
    images_per_second,
)


def spec(size=160, name="mobilenet_v2", alpha=1.0, strategy="frozen", epochs=5, ft=0, cache=False,
         **train) -> RunSpec:
    return RunSpec(
        dataset=DatasetSpec(image_size=size),
        backbone=BackboneSpec(name=name, alpha=alpha, weights="none"),
        train=TrainSpec(strategy=strategy, epochs=epochs, fine_tune_epochs=ft, feature_cache=cache, **train),
    )


def test_anchor_is_the_measured_mobilenet_v2_throughput():
    assert images_per_second(spec(), training=False) == pytest.approx(ANCHOR_FORWARD_IPS) == 70
    assert images_per_second(spec(), training=True) == pytest.approx(ANCHOR_TRAIN_IPS) == 16
    # "at 224 px about half"
    assert images_per_second(spec(224), training=False) == pytest.approx(35, rel=0.05)
    assert images_per_second(spec(224), training=True) == pytest.approx(8, rel=0.05)
    # the default alpha counts as 1.0
    assert images_per_second(spec(alpha=None), training=True) == pytest.approx(16)


def test_frozen_epoch_is_about_a_forward_pass_of_the_training_images():
    seconds = estimate_epoch_seconds(spec(), 700)
    forward = 700 / 70
    assert forward < seconds < forward * 1.5  # plus validation and a fixed overhead


@pytest.mark.parametrize("smaller, larger", [
    (spec(96), spec(160)),
    (spec(160), spec(224)),
    (spec(alpha=0.35), spec(alpha=1.0)),
    (spec(name="mobilenet_v3_small"), spec(name="resnet50", alpha=None)),
    (spec(strategy="frozen"), spec(strategy="finetune")),
    (spec(strategy="frozen"), spec(strategy="scratch")),
])
def test_estimates_grow_with_image_size_width_backbone_and_training(smaller, larger):
    assert estimate_epoch_seconds(smaller, 500) < estimate_epoch_seconds(larger, 500)


def test_more_images_and_more_epochs_take_longer():
    assert estimate_epoch_seconds(spec(), 100) < estimate_epoch_seconds(spec(), 1000)
    assert estimate_run_seconds(spec(epochs=2), 500) < estimate_run_seconds(spec(epochs=6), 500)


def test_two_stage_runs_average_cheap_and_dear_epochs():
    two_stage = spec(strategy="frozen_then_finetune", epochs=2, ft=2)
    frozen, tuned = estimate_epoch_seconds(spec(epochs=2), 500), estimate_epoch_seconds(spec(strategy="finetune"), 500)
    assert estimate_epoch_seconds(two_stage, 500) == pytest.approx((frozen + tuned) / 2)
    assert estimate_run_seconds(two_stage, 500) == pytest.approx(2 * frozen + 2 * tuned + 2 * STAGE_START_S)
    assert estimate_run_seconds(spec(epochs=2), 500) == pytest.approx(2 * frozen + STAGE_START_S)


def test_the_feature_cache_pays_the_frozen_forward_pass_once():
    uncached, cached = spec(epochs=10), spec(epochs=10, cache=True)
    assert estimate_run_seconds(cached, 700) < estimate_run_seconds(uncached, 700) / 3
    # one epoch: the single forward pass costs about the same either way
    assert estimate_run_seconds(spec(epochs=1, cache=True), 700) == pytest.approx(
        estimate_run_seconds(spec(epochs=1), 700), rel=0.1)
    # fine-tuning the top quarter on cached features beats stepping through the whole network
    assert estimate_epoch_seconds(spec(strategy="finetune", cache=True), 700) < estimate_epoch_seconds(
        spec(strategy="finetune"), 700)
    # augmentation on the fly cannot use the cache; precomputed views can
    on_the_fly = spec(epochs=10, cache=True, augmentations=("flip",))
    views = spec(epochs=10, cache=True, augmentations=("flip",), augment_views=2)
    assert estimate_run_seconds(on_the_fly, 700) == pytest.approx(estimate_run_seconds(uncached, 700))
    assert estimate_run_seconds(views, 700) < estimate_run_seconds(on_the_fly, 700)
    # scratch never caches
    assert estimate_run_seconds(spec(strategy="scratch", cache=True), 700) == pytest.approx(
        estimate_run_seconds(spec(strategy="scratch"), 700))


def test_hub_backbones_count_as_the_anchor():
    hub = dataclasses.replace(spec(), backbone=BackboneSpec(name="hub:https://example/m", weights="none"))
    assert images_per_second(hub, training=True) == pytest.approx(16)


def test_eta_uses_epoch_durations_then_elapsed_time():
    assert eta_seconds(0.0, None, 4) is None
    assert eta_seconds(0.5, 100.0, 4, epoch_seconds=[10.0, 30.0]) == pytest.approx(40.0)
    assert eta_seconds(0.25, 100.0, 4, now=130.0) == pytest.approx(90.0)
    assert eta_seconds(1.0, 100.0, 4, now=130.0) == 0.0


@pytest.mark.parametrize("seconds, text", [(None, "—"), (4.4, "4 s"), (60, "1 min"), (125, "2 min 5 s"),
                                           (3600, "1 h"), (3725, "1 h 2 min")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_augmentation_costs_name_both_options_and_cached_views_are_cheaper():
    import dataclasses
    import re

    from tlcore.config import RunSpec, TrainSpec
    from tlcore.training.estimate import augmentation_costs, estimate_run_seconds

    spec = RunSpec(train=TrainSpec(strategy="frozen", epochs=10, augmentations=("flip",)))
    text = augmentation_costs(spec, 1000)
    assert "on the fly" in text and "4 cached views" in text
    fly = estimate_run_seconds(spec, 1000)
    views = estimate_run_seconds(
        dataclasses.replace(spec, train=dataclasses.replace(spec.train, augment_views=4)), 1000)
    assert views < fly
    assert len(re.findall(r"≈", text)) == 2
