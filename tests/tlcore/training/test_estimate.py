import dataclasses
import os

import pytest

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec
from tlcore.records import EpochRecord, RunStatus
from tlcore.runs.store import RunStore
from tlcore.training.estimate import (
    ANCHOR_FORWARD_IPS,
    ANCHOR_SERVER,
    ANCHOR_TRAIN_IPS,
    STAGE_START_S,
    ServerProfile,
    estimate_basis,
    estimate_epoch_seconds,
    estimate_run_seconds,
    eta_seconds,
    format_seconds,
    images_per_second,
    measure_server,
    server_cores,
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
    seconds = estimate_epoch_seconds(spec(), 700, ANCHOR_SERVER)
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
    frozen = estimate_epoch_seconds(spec(epochs=2), 500)
    tuned = estimate_epoch_seconds(spec(strategy="finetune"), 500)
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


def finished_run(store: RunStore, run_spec: RunSpec, seconds: list[float], images: int = 500) -> str:
    """A finished run in ``store`` whose epochs took ``seconds`` each for ``images`` training images."""
    run, _ = store.create_run(run_spec)
    for epoch, took in enumerate(seconds, start=1):
        store.add_epoch(run.id, EpochRecord(epoch, "frozen", 1.0, 0.5, 1.0, 0.5, 1e-3, took, images / took))
    store.finish(run.id, RunStatus.FINISHED)
    return run.id


def test_estimates_follow_the_speed_recorded_by_finished_runs(tmp_path):
    store = RunStore(tmp_path)
    # 500 images: the first epoch also traced the graph, the steady ones ran at 50 images/s
    finished_run(store, spec(epochs=3), seconds=[30.0, 10.0, 10.0])
    server = measure_server(store, cores=2)
    assert [s.images_per_second for s in server.samples] == [pytest.approx(50.0)]
    assert estimate_epoch_seconds(spec(), 1000, server) == pytest.approx(20.0)
    assert estimate_run_seconds(spec(epochs=4), 1000, server) == pytest.approx(4 * 20.0 + STAGE_START_S)
    # twice the image area costs twice the time
    assert estimate_epoch_seconds(spec(size=226), 1000, server) == pytest.approx(40.0, rel=0.01)
    assert estimate_epoch_seconds(spec(), 1000, ANCHOR_SERVER) < 19  # the rule of thumb: about 18 s
    basis = estimate_basis(spec(), server)
    assert basis == "Measured on this server, 2 cores: 1 finished run(s) like this one"


def test_without_comparable_runs_the_rule_of_thumb_scaled_to_the_cores_applies(tmp_path):
    store = RunStore(tmp_path)
    assert measure_server(store, cores=2) == ANCHOR_SERVER
    finished_run(store, spec(name="resnet50", alpha=None), seconds=[5.0, 5.0])  # another backbone
    unfinished, _ = store.create_run(spec(strategy="finetune"))
    store.add_epoch(unfinished.id, EpochRecord(1, "finetune", 1.0, 0.5, 1.0, 0.5, 1e-3, 1.0, 500.0))
    server = measure_server(store, cores=2)
    assert len(server.samples) == 1
    for other in (spec(), spec(strategy="finetune"), spec(cache=True)):
        assert estimate_epoch_seconds(other, 700, server) == estimate_epoch_seconds(other, 700, ANCHOR_SERVER)
        assert estimate_basis(other, server) == "Rule of thumb for this server, 2 cores"
    four = ServerProfile(cores=4)
    assert images_per_second(spec(), training=True, cores=4) == pytest.approx(2 * ANCHOR_TRAIN_IPS)
    assert estimate_epoch_seconds(spec(), 700, four) == pytest.approx(
        (estimate_epoch_seconds(spec(), 700, ANCHOR_SERVER) - 1.0) / 2 + 1.0)  # the fixed overhead stays


def test_a_two_stage_run_measured_in_one_stage_is_partly_measured(tmp_path):
    store = RunStore(tmp_path)
    finished_run(store, spec(), seconds=[10.0, 10.0])
    server = measure_server(store, cores=2)
    two_stage = spec(strategy="frozen_then_finetune", epochs=2, ft=2)
    assert estimate_basis(two_stage, server).startswith("Partly measured on this server, 2 cores")
    tuned = estimate_epoch_seconds(spec(strategy="finetune"), 500, ANCHOR_SERVER)
    assert estimate_epoch_seconds(two_stage, 500, server) == pytest.approx((10.0 + tuned) / 2)


def test_the_label_names_this_servers_core_count(tmp_path, monkeypatch):
    assert ServerProfile(cores=1).label == "this server, 1 core"
    assert ServerProfile(cores=8).label == "this server, 8 cores"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert server_cores() == 3
    server = measure_server(RunStore(tmp_path))
    assert server.cores == 3
    assert estimate_basis(spec(), server) == "Rule of thumb for this server, 3 cores"
