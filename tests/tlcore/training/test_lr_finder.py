"""The LR range test: its curve falls then diverges, its suggestion lies where it falls, it is
seeded, it trains what the first stage trains, and impossible requests are refused."""

from __future__ import annotations

import dataclasses
import math
import os

import keras
import numpy as np
import pytest
from calibrated import calibrated_weights
from homes import studio_home
from specs import tiny_spec

from tlcore.config import BackboneSpec
from tlcore.data import load_dataset
from tlcore.data.rows import RowLayout, RowStore
from tlcore.errors import ConfigError
from tlcore.report.search_plots import lr_curve_figure, schedule_figure
from tlcore.training.datasets import as_tf_dataset, one_hot
from tlcore.training.head_search import feature_head
from tlcore.training.lr_finder import (
    END_RATE,
    NO_FALL_RULE,
    RULE,
    SKIP_START,
    SMOOTHING,
    START_RATE,
    lr_range_test,
    rate_at,
    rate_field,
    smooth,
    suggest,
    sweep,
)
from tlcore.training.observer import TrainingObserver

CLASSES, WIDTH = 4, 24


def clustered_rows(tmp_path, count: int = 512) -> tuple[object, np.ndarray]:
    """Features of four clusters with a fifth of the labels drawn at random, stored on disk as a
    run's features are: a head learns the clusters, and too large a rate overshoots."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, CLASSES, count)
    centres = rng.normal(size=(CLASSES, WIDTH))
    rows = (centres[labels] + rng.normal(size=(count, WIDTH))).astype(np.float32)
    store = RowStore(tmp_path / "rows", RowLayout((WIDTH,), "float32"))
    with store.writer() as writer:
        for number, row in enumerate(rows):
            writer.add(f"row{number}", row)
    noisy = np.where(rng.random(count) < 0.2, rng.integers(0, CLASSES, count), labels)
    return store.array([f"row{number}" for number in range(count)]), noisy


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    with studio_home(tmp_path_factory.mktemp("lr")):
        images = load_dataset(tiny_spec().dataset).train.images[:128]
    return calibrated_weights(images, tmp_path_factory.mktemp("weights"))


@pytest.fixture
def spec(calibrated, monkeypatch):
    """The tiny spec on a calibrated backbone, whose features are not degenerate."""
    monkeypatch.setenv("TL_DATA_ROOT", os.pathsep.join([os.environ["TL_DATA_ROOT"], str(calibrated.parent)]))
    base = tiny_spec()
    return dataclasses.replace(base, backbone=BackboneSpec("mobilenet_v2", 0.35, str(calibrated)))


class StopAfter(TrainingObserver):
    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.seen = 0

    def on_batch(self, progress) -> None:
        self.seen = progress.batch

    def should_stop(self) -> bool:
        return self.seen >= self.batches


def test_the_rate_rises_exponentially_from_start_to_end():
    rates = [rate_at(step, 100) for step in range(100)]
    assert rates[0] == pytest.approx(START_RATE) and rates[-1] == pytest.approx(END_RATE)
    ratios = np.array(rates[1:]) / np.array(rates[:-1])
    assert np.allclose(ratios, ratios[0]) and ratios[0] > 1


def test_the_smoothed_loss_is_a_bias_corrected_weighted_mean():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # no pull towards zero
    losses = [3.0, 1.0, 2.0]
    weights = [SMOOTHING ** 2, SMOOTHING, 1.0]
    expected = sum(w * loss for w, loss in zip(weights, losses, strict=True)) / sum(weights)
    assert smooth(losses)[-1] == pytest.approx(expected)


def test_the_suggestion_is_the_steepest_fall_before_the_minimum():
    rates = [rate_at(step, 100) for step in range(100)]
    logs = np.log10(rates)
    # Falls fastest at 1e-3, bottoms out at 1e-1, then climbs.
    curve = 2.0 - np.tanh(2.0 * (logs + 3.0)) + np.where(logs > -1.0, 3.0 * (logs + 1.0) ** 2, 0.0)
    suggestion, rule, min_over_ten = suggest(rates, list(curve))
    assert rule == RULE
    assert math.log10(suggestion) == pytest.approx(-3.0, abs=0.1)
    assert min_over_ten == pytest.approx(rates[int(np.argmin(curve))] / 10)


def test_a_curve_that_never_falls_suggests_the_minimum_over_ten():
    rates = [rate_at(step, 30) for step in range(30)]
    rising = list(np.linspace(1.0, 3.0, 30))
    assert suggest(rates, rising) == (rates[0] / 10, NO_FALL_RULE, rates[0] / 10)


def test_a_loss_that_is_never_finite_is_refused():
    with pytest.raises(ConfigError, match="not finite"):
        suggest([1e-7, 1e-6], [math.nan, math.inf])


def test_the_curve_falls_then_rises_on_clustered_features(tmp_path):
    rows, labels = clustered_rows(tmp_path)
    keras.utils.set_random_seed(0)
    model = feature_head(WIDTH, CLASSES, dropout=0.0, hidden_units=0)
    batches = iter(as_tf_dataset(rows, one_hot(labels, CLASSES), 32, shuffle_seed=1).repeat())
    rates, losses = sweep(model, batches, tiny_spec().train)
    smoothed = smooth(losses)
    lowest = int(np.argmin(smoothed))
    assert smoothed[lowest] < 0.7 * smoothed[SKIP_START]  # it learns, far below the flat start
    assert smoothed[-1] > 1.3 * smoothed[lowest] and rates[lowest] < rates[-1]  # then overshoots
    suggestion, rule, _ = suggest(rates, smoothed)
    position = rates.index(suggestion)
    assert rule == RULE and SKIP_START <= position < lowest
    assert smoothed[lowest] < smoothed[position] < smoothed[SKIP_START]  # on the way down
    assert smoothed[position + 1] < smoothed[position - 1]


def test_a_frozen_first_stage_is_tested_on_features_and_is_reproducible(spec):
    first, second = lr_range_test(spec), lr_range_test(spec)
    assert first.on_features and first.rates == second.rates and first.losses == second.losses
    assert first.suggestion == second.suggestion and first.rule == RULE
    assert min(first.smoothed) < first.smoothed[0] and first.smoothed[-1] > min(first.smoothed)
    position = first.rates.index(first.suggestion)
    assert position < int(np.argmin(first.smoothed))
    assert first.to_dict()["rates"] == list(first.rates) and first.seconds > 0


def test_a_stage_that_trains_the_backbone_is_tested_on_images_and_can_be_stopped(spec):
    finetune = dataclasses.replace(spec, train=dataclasses.replace(spec.train, strategy="finetune",
                                                                   feature_cache=False))
    finding = lr_range_test(finetune, observer=StopAfter(4), steps=20)
    assert not finding.on_features and len(finding.rates) == 4
    assert finding.rates[1] == pytest.approx(rate_at(1, 20))
    assert rate_field(finetune.train) == "fine_tune_learning_rate"
    assert rate_field(spec.train) == "learning_rate"


def test_a_spec_that_cannot_train_is_refused_clearly():
    with pytest.raises(ConfigError, match="fine-tune epoch"):
        lr_range_test(tiny_spec("frozen_then_finetune", fine_tune_epochs=0))
    with pytest.raises(ConfigError, match="at least 10 steps"):
        lr_range_test(tiny_spec(), steps=3)


def test_the_figures_mark_the_suggestion_and_draw_a_schedule():
    rates = [rate_at(step, 40) for step in range(40)]
    losses = [1.5 - 0.02 * step if step < 30 else 1.0 + (step - 30) for step in range(40)]
    smoothed = smooth(losses)
    suggestion, rule, min_over_ten = suggest(rates, smoothed)
    finding = {"rates": rates, "losses": losses[:-1] + [None], "smoothed": smoothed, "suggestion": suggestion,
               "rule": rule, "min_over_ten": min_over_ten}
    figure = lr_curve_figure(finding)
    assert figure.layout.xaxis.type == "log"
    label = figure.layout.annotations[0].text
    assert rule in label and f"{suggestion:.2g}" in label
    assert figure.layout.shapes[0].x0 == pytest.approx(math.log10(suggestion))
    assert figure.layout.yaxis.range[1] < max(losses[:-1])  # a diverged step does not squash the curve
    schedule = schedule_figure([0.1, 0.05, 0.01], "cosine")
    assert list(schedule.data[0].y) == [0.1, 0.05, 0.01] and schedule.layout.title.text == "cosine"
