"""The observer hears a run's epochs, batches and notes, and stops it when it asks to."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from recording import RecordingObserver
from specs import tiny_spec

from tlcore.data import load_dataset
from tlcore.training.loop import train
from tlcore.training.observer import BatchProgress, NoteKeeper, TrainingObserver
from tlcore.training.reporting import ObserverCallback


def boring_fit(observer: TrainingObserver, epochs: int = 3) -> tuple[keras.Model, ObserverCallback]:
    """A dense model on 40 random rows in batches of 10: four steps per epoch."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 40)]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    reporter = ObserverCallback("head", images_per_epoch=40, observer=observer)
    model.fit(x, y, batch_size=10, epochs=epochs, validation_data=(x[:8], y[:8]),
              callbacks=[reporter], verbose=0)
    return model, reporter


def test_the_base_observer_does_nothing_and_never_stops():
    observer = TrainingObserver()
    observer.on_batch(BatchProgress(1, 4))
    observer.note("ignored")
    assert observer.should_stop() is False
    _, reporter = boring_fit(observer, epochs=2)
    assert [e.epoch for e in reporter.history] == [1, 2] and not reporter.stopped


def test_the_callback_reports_every_step_and_every_finished_epoch():
    observer = RecordingObserver()
    _, reporter = boring_fit(observer)
    assert [(p.batch, p.steps) for p in observer.batches] == [(b, 4) for b in (1, 2, 3, 4)] * 3
    assert [(e.epoch, e.stage) for e in observer.epochs] == [(1, "head"), (2, "head"), (3, "head")]
    assert observer.epochs == reporter.history
    assert all(np.isfinite(e.val_loss) and e.images_per_second > 0 for e in observer.epochs)


def test_should_stop_turning_true_stops_within_one_step_and_drops_the_cut_epoch():
    observer = RecordingObserver(stop_when=lambda seen: len(seen.batches) == 6)  # epoch 2, step 2
    model, reporter = boring_fit(observer, epochs=5)
    assert reporter.stopped and model.stop_training
    assert len(observer.batches) == 6
    assert [e.epoch for e in observer.epochs] == [1]
    assert model.optimizer.iterations.numpy() == 6


def test_note_keeper_keeps_notes_and_passes_them_on():
    observer = RecordingObserver()
    note = NoteKeeper(observer)
    note("first")
    note("second")
    assert note.notes == observer.notes == ["first", "second"]


@pytest.fixture(scope="module")
def bundle():
    return load_dataset(tiny_spec().dataset)


@pytest.mark.parametrize("cache", [True, False])
def test_train_sends_epochs_and_notes_to_the_observer_and_stops_when_asked(bundle, cache):
    observer = RecordingObserver(stop_when=lambda seen: len(seen.epochs) >= 2)
    result = train(tiny_spec("frozen", epochs=4, feature_cache=cache), observer=observer, bundle=bundle)
    assert result.status == "stopped"
    assert [e.epoch for e in observer.epochs] == [1, 2]
    assert observer.epochs == result.history
    assert observer.notes == result.notes
    assert any(n.startswith("Stage frozen: backbone frozen") for n in observer.notes)
    assert any("cached features" in n for n in observer.notes) == cache
