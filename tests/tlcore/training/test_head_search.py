"""The head search: seeded and reproducible under a trial cap, ended by its budget, better than
a bad setting, and its best setting carried into a spec."""

from __future__ import annotations

import numpy as np
import pytest
from specs import tiny_spec

from tlcore.config import TrainSpec
from tlcore.data.rows import RowLayout, RowStore
from tlcore.errors import ConfigError
from tlcore.report.search_plots import trials_figure
from tlcore.training.head_search import (
    SIGNIFICANT_DIGITS,
    FeatureData,
    SearchSpace,
    Trial,
    best_spec,
    best_trial,
    evaluate_setting,
    head_search,
    search_heads,
)
from tlcore.training.observer import TrainingObserver

CLASSES, WIDTH = 5, 32
TRAIN = TrainSpec(epochs=6)
BAD = {"learning_rate": 1e-5, "dropout": 0.6, "label_smoothing": 0.0, "weight_decay": 0.0,
       "head_hidden_units": 0}
"""A rate far too low to move a fresh head in a few epochs."""


def generated_split(store: RowStore, name: str, count: int, seed: int) -> tuple[object, np.ndarray]:
    """Overlapping clusters (about nine in ten separable by a good head), on disk as features are."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1).normal(size=(CLASSES, WIDTH))
    labels = rng.integers(0, CLASSES, count)
    rows = (centres[labels] + rng.normal(scale=1.6, size=(count, WIDTH))).astype(np.float32)
    identities = [f"{name}{number}" for number in range(count)]
    with store.writer() as writer:
        for identity, row in zip(identities, rows, strict=True):
            writer.add(identity, row)
    return store.array(identities), labels


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> FeatureData:
    store = RowStore(tmp_path_factory.mktemp("features"), RowLayout((WIDTH,), "float32"))
    train, train_labels = generated_split(store, "train", 600, seed=2)
    val, val_labels = generated_split(store, "val", 200, seed=3)
    return FeatureData(train, train_labels, val, val_labels, CLASSES)


@pytest.fixture(scope="module")
def capped(data):
    heard: list[Trial] = []
    search = search_heads(data, TRAIN, budget_seconds=600, max_trials=4, on_trial=heard.append)
    return search, heard


class StopAfterFirstTrial(TrainingObserver):
    def __init__(self) -> None:
        self.asked = 0

    def should_stop(self) -> bool:
        self.asked += 1
        return True


def test_a_capped_search_runs_that_many_seeded_trials_and_repeats_them(data, capped):
    search, heard = capped
    assert [trial.number for trial in search.trials] == [0, 1, 2, 3] and heard == list(search.trials)
    again = search_heads(data, TRAIN, budget_seconds=600, max_trials=4)
    assert [t.params for t in again.trials] == [t.params for t in search.trials]
    assert [t.val_accuracy for t in again.trials] == [t.val_accuracy for t in search.trials]
    assert again.best.number == search.best.number
    assert len({tuple(sorted(t.params.items())) for t in search.trials}) == 4  # the sampler explores


def test_settings_stay_in_the_space_and_are_rounded(capped):
    space = SearchSpace()
    for trial in capped[0].trials:
        params = trial.params
        assert space.learning_rate[0] <= params["learning_rate"] <= space.learning_rate[1]
        assert space.dropout[0] <= params["dropout"] <= space.dropout[1]
        assert params["head_hidden_units"] in space.head_hidden_units
        for name in ("learning_rate", "dropout", "label_smoothing", "weight_decay"):
            assert float(f"{params[name]:.{SIGNIFICANT_DIGITS}g}") == params[name]


def test_the_budget_ends_a_search_within_one_trial(data):
    search = search_heads(data, TRAIN, budget_seconds=2.0, max_trials=100)
    assert 1 <= len(search.trials) < 100
    longest = max(trial.seconds for trial in search.trials)
    assert search.budget_seconds <= search.spent_seconds <= search.budget_seconds + longest + 0.25
    assert sum(t.seconds for t in search.trials) <= search.spent_seconds


def test_the_best_trial_beats_a_deliberately_bad_setting(data, capped):
    search = capped[0]
    bad = evaluate_setting(data, TRAIN, BAD, epochs=TRAIN.epochs, patience=3)
    assert search.best.val_accuracy >= bad.val_accuracy + 0.2
    assert search.best.val_accuracy == max(trial.val_accuracy for trial in search.trials)


def test_best_spec_carries_the_best_settings_and_keeps_the_strategy(capped):
    search = capped[0]
    spec = tiny_spec("frozen_then_finetune", fine_tune_epochs=2)
    best = best_spec(spec, search).validate()
    assert {name: getattr(best.train, name) for name in search.best.params} == search.best.params
    assert best.train.strategy == "frozen_then_finetune" and best.train.fine_tune_epochs == 2
    assert best.dataset == spec.dataset and best.backbone == spec.backbone


def test_ties_go_to_the_lower_loss_then_the_earlier_trial():
    trials = [Trial(0, {}, 0.9, 0.5, 1.0), Trial(1, {}, 0.9, 0.3, 1.0), Trial(2, {}, 0.9, 0.3, 1.0),
              Trial(3, {}, 0.8, 0.1, 1.0)]
    assert best_trial(trials).number == 1


def test_a_spec_is_searched_on_its_frozen_features_and_stops_when_asked():
    observer, heard = StopAfterFirstTrial(), []
    search = head_search(tiny_spec(), budget_seconds=600, observer=observer, on_trial=heard.append)
    assert len(search.trials) == 1 and observer.asked == 1 and heard == [search.best]
    payload = search.to_dict()
    assert payload["best"] == payload["trials"][0] and payload["budget_seconds"] == 600
    assert set(payload["best"]["params"]) == {"learning_rate", "dropout", "label_smoothing", "weight_decay",
                                              "head_hidden_units"}


def test_an_impossible_budget_or_spec_is_refused(data):
    with pytest.raises(ConfigError, match="positive budget"):
        search_heads(data, TRAIN, budget_seconds=0)
    with pytest.raises(ConfigError, match="fine-tune epoch"):
        head_search(tiny_spec("frozen_then_finetune", fine_tune_epochs=0))


def test_the_trials_figure_has_a_subplot_per_setting_and_marks_the_best(capped):
    payload = capped[0].to_dict()
    figure = trials_figure(payload)
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles == ["learning rate", "dropout", "label smoothing", "weight decay", "hidden units"]
    best = [trace for trace in figure.data if trace.name == "best trial"]
    assert len(best) == 5 and all(list(trace.y) == [payload["best"]["val_accuracy"]] for trace in best)
    assert figure.layout.xaxis.type == "log" and figure.layout.xaxis5.type == "category"
