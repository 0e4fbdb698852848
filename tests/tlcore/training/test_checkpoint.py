"""The checkpoint callback saves the classifier after every finished epoch."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlcore.training.checkpoint import Checkpoint, CheckpointCallback, clear_checkpoint


class CheckpointSpy(keras.callbacks.Callback):
    """Reads the checkpoint on disk at every epoch end (placed after the checkpoint callback)."""

    def __init__(self, folder) -> None:
        super().__init__()
        self.folder = folder
        self.seen: list[int | None] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        found = Checkpoint.load(self.folder)
        self.seen.append(found.epoch if found else None)


class StopAtStep(keras.callbacks.Callback):
    """Stands in for a stop request: sets ``stop_training`` after the ``step``-th step."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step, self.done = step, 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.done += 1
        if self.done == self.step:
            self.model.stop_training = True


def boring_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 4)).astype(np.float32), np.eye(2, dtype=np.float32)[rng.integers(0, 2, 40)]


def test_a_checkpoint_is_written_after_each_epoch_numbered_on_from_the_first(tmp_path, data):
    model, folder = boring_model(), tmp_path / "checkpoint"
    spy = CheckpointSpy(folder)
    model.fit(*data, batch_size=10, initial_epoch=2, epochs=5, verbose=0,
              callbacks=[CheckpointCallback(folder, model), spy])
    assert spy.seen == [3, 4, 5]
    fresh = boring_model()
    Checkpoint.load(folder).restore(fresh)
    for saved, trained in zip(fresh.weights, model.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), trained.numpy())
    clear_checkpoint(folder)
    assert Checkpoint.load(folder) is None


def test_an_epoch_cut_short_by_a_stop_is_not_saved(tmp_path, data):
    model, folder = boring_model(), tmp_path / "checkpoint"
    spy = CheckpointSpy(folder)
    model.fit(*data, batch_size=10, epochs=5, verbose=0,
              callbacks=[StopAtStep(6), CheckpointCallback(folder, model), spy])
    assert spy.seen == [1, 1]  # epoch 2 stopped after its second step
    assert Checkpoint.load(folder).epoch == 1


def test_the_classifier_is_saved_when_only_a_part_of_it_trains(tmp_path, data):
    classifier = boring_model()
    inputs = keras.Input((4,))
    part = keras.Model(inputs, classifier.layers[-1](inputs))  # shares the dense layer
    part.compile(optimizer="sgd", loss="categorical_crossentropy")
    folder = tmp_path / "checkpoint"
    part.fit(*data, batch_size=10, epochs=1, verbose=0, callbacks=[CheckpointCallback(folder, classifier)])
    restored = boring_model()
    restored.set_weights([np.zeros_like(w) for w in restored.get_weights()])
    Checkpoint.load(folder).restore(restored)
    for saved, trained in zip(restored.weights, classifier.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), trained.numpy())
