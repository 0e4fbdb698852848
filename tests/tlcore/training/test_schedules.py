"""Learning-rate schedules: their curves, the rate each epoch reports, saving, and resuming."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from recording import RecordingObserver
from specs import tiny_spec

from tlcore.config import TrainSpec
from tlcore.data import load_dataset
from tlcore.training.loop import train
from tlcore.training.model import FreezePolicy
from tlcore.training.reporting import ObserverCallback
from tlcore.training.schedules import (
    ONE_CYCLE_DIV,
    ONE_CYCLE_FINAL_DIV,
    WarmupCosine,
    learning_rate,
    schedule_curve,
    schedule_kind,
)


@pytest.fixture(scope="module")
def bundle():
    return load_dataset(tiny_spec().dataset)


def steps_of(bundle, batch_size: int = 32) -> int:
    return -(-len(bundle.train) // batch_size)


def test_cosine_warms_up_linearly_then_decays_to_about_zero():
    curve = np.array(schedule_curve("cosine", 1e-2, 200, warmup_fraction=0.1))
    assert len(curve) == 200 and curve.min() > 0
    assert curve.argmax() == 20 and curve[20] == pytest.approx(1e-2)
    np.testing.assert_allclose(np.diff(curve[:21]), 1e-2 / 21, rtol=1e-9)  # a straight line up
    assert np.all(np.diff(curve[20:]) < 0)
    assert curve[-1] < 1e-2 * 1e-3
    assert curve[110] == pytest.approx(1e-2 / 2, rel=0.01)  # half-way down at half the decay
    without_warmup = schedule_curve("cosine", 1e-2, 200, warmup_fraction=0.0)
    assert without_warmup[0] == pytest.approx(1e-2)


def test_one_cycle_rises_from_a_25th_to_the_rate_over_a_quarter_then_falls_far_below():
    curve = np.array(schedule_curve("one_cycle", 1e-2, 400, warmup_fraction=0.4))  # fraction unused
    assert curve.argmax() == 100 and curve[100] == pytest.approx(1e-2)
    assert curve[0] == pytest.approx(1e-2 / ONE_CYCLE_DIV, rel=0.01)
    assert np.all(np.diff(curve[:101]) > 0) and np.all(np.diff(curve[100:]) < 0)
    final = 1e-2 / (ONE_CYCLE_DIV * ONE_CYCLE_FINAL_DIV)
    assert final < curve[-1] < 1e-2 * 1e-3


def test_constant_is_the_plain_rate():
    assert schedule_curve("constant", 3e-4, 5, 0.1) == [3e-4] * 5
    assert learning_rate("constant", 3e-4, 5, 0.1) == 3e-4
    assert isinstance(learning_rate("constant", 3e-4, 5, 0.1), float)


@pytest.mark.parametrize("kind", ["cosine", "one_cycle"])
def test_the_keras_schedule_follows_the_drawn_curve_and_an_offset_moves_it_on(kind):
    curve = schedule_curve(kind, 1e-3, 50, 0.2)
    schedule = learning_rate(kind, 1e-3, 50, 0.2)
    assert isinstance(schedule, WarmupCosine)
    steps = keras.ops.arange(50)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(schedule(steps)), curve, rtol=1e-5, atol=1e-9)
    resumed = learning_rate(kind, 1e-3, 50, 0.2, done_steps=30)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(resumed(keras.ops.arange(20))), curve[30:],
                               rtol=1e-5, atol=1e-9)


def test_a_schedule_round_trips_through_its_config():
    schedule = learning_rate("one_cycle", 1e-3, 80, 0.1, done_steps=7)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(again) is WarmupCosine and again.get_config() == schedule.get_config()
    assert float(again(3)) == float(schedule(3))


def test_frozen_and_scratch_stages_follow_schedule_and_fine_tuning_its_own():
    spec = TrainSpec(schedule="one_cycle", fine_tune_schedule="cosine")
    assert schedule_kind(spec, FreezePolicy(trainable_top=0)) == "one_cycle"
    assert schedule_kind(spec, FreezePolicy(trainable_top=None)) == "one_cycle"
    assert schedule_kind(spec, FreezePolicy(trainable_top=12)) == "cosine"


class BiasSteps(keras.callbacks.Callback):
    """The bias before and after each step; with a loss whose gradient in it is 1, plain SGD
    moves it by exactly the step's learning rate."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[float] = []
        self._before = 0.0

    def bias(self) -> float:
        return float(self.model.layers[-1].bias.numpy()[0])

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._before = self.bias()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps.append(self._before - self.bias())


def test_each_epoch_reports_the_rate_its_last_step_used():
    schedule = learning_rate("cosine", 0.1, 12, warmup_fraction=0.25)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule),
                  loss=lambda _, predicted: keras.ops.mean(predicted))
    observer, used = RecordingObserver(), BiasSteps()
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    model.fit(x, np.zeros((16, 1), np.float32), batch_size=4, epochs=3, shuffle=False, verbose=0,
              callbacks=[used, ObserverCallback("head", 16, observer, schedule=schedule)])
    np.testing.assert_allclose(used.steps, schedule_curve("cosine", 0.1, 12, 0.25), rtol=1e-4)
    reported = [record.learning_rate for record in observer.epochs]
    np.testing.assert_allclose(reported, [used.steps[3], used.steps[7], used.steps[11]], rtol=1e-4)
    assert reported[0] != pytest.approx(used.steps[4], rel=1e-3)  # not the next epoch's first step


def test_each_stage_follows_its_own_schedule_over_its_own_steps(bundle):
    spec = tiny_spec("frozen_then_finetune", epochs=2, fine_tune_epochs=2, fine_tune_layers=5,
                     schedule="one_cycle", fine_tune_schedule="cosine", warmup_fraction=0.2)
    result = train(spec, bundle=bundle)
    steps = steps_of(bundle)
    head = schedule_curve("one_cycle", spec.train.learning_rate, 2 * steps, 0.2)
    tune = schedule_curve("cosine", spec.train.fine_tune_learning_rate, 2 * steps, 0.2)
    expected = [head[steps - 1], head[2 * steps - 1], tune[steps - 1], tune[2 * steps - 1]]
    np.testing.assert_allclose([e.learning_rate for e in result.history], expected, rtol=1e-5)
    assert any(f"one-cycle over {2 * steps} steps" in note for note in result.notes)


def test_a_resumed_run_continues_the_schedule_where_it_stopped(bundle, tmp_path):
    spec = tiny_spec("frozen", epochs=3, schedule="cosine")
    folder = tmp_path / "checkpoint"
    first = train(spec, bundle=bundle, checkpoint_dir=folder,
                  observer=RecordingObserver(stop_when=lambda seen: len(seen.epochs) >= 1))
    assert [e.epoch for e in first.history] == [1]
    resumed = train(spec, bundle=bundle, checkpoint_dir=folder)
    steps = steps_of(bundle)
    curve = schedule_curve("cosine", spec.train.learning_rate, 3 * steps, spec.train.warmup_fraction)
    assert [e.epoch for e in resumed.history] == [2, 3]
    np.testing.assert_allclose([e.learning_rate for e in resumed.history],
                               [curve[2 * steps - 1], curve[3 * steps - 1]], rtol=1e-5)
    assert first.history[0].learning_rate == pytest.approx(curve[steps - 1], rel=1e-5)


def test_a_model_trained_on_images_with_a_schedule_saves_and_loads(bundle, tmp_path):
    spec = tiny_spec("frozen", epochs=1, schedule="one_cycle", feature_cache=False)
    result = train(spec, bundle=bundle)
    result.model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    saved_schedule = result.model.optimizer.get_config()["learning_rate"]
    assert loaded.optimizer.get_config()["learning_rate"] == saved_schedule
    assert saved_schedule["registered_name"] == "tlcore>WarmupCosine"
    assert int(loaded.optimizer.iterations.numpy()) == steps_of(bundle)
    images = np.asarray(bundle.test.images[:4], np.float32)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), result.model.predict(images, verbose=0),
                               atol=1e-6)
