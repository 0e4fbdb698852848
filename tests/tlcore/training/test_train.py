import dataclasses

import keras
import numpy as np
import pytest
from recording import RecordingObserver
from specs import tiny_spec

from tlcore.config import TrainSpec
from tlcore.data import load_dataset
from tlcore.training.compiling import OPTIMIZER_FACTORIES, compile_for_stage
from tlcore.training.loop import train
from tlcore.training.model import backbone_of
from tlcore.training.stages import plan_stages


@pytest.fixture(scope="module")
def bundle():
    return load_dataset(tiny_spec().dataset)


def weights_by_name(model: keras.Model) -> dict[str, np.ndarray]:
    return {w.path: np.array(w.numpy()) for w in model.weights}


def backbone_snapshot(spec, bundle):
    """Backbone weights right after building, by rebuilding with the same seed."""
    keras.utils.set_random_seed(spec.train.seed)
    from tlcore.backbones import build_backbone
    return {w.path: np.array(w.numpy())
            for w in build_backbone(spec.backbone, spec.dataset.image_size).model.weights}


def trained_backbone_weights(result):
    return {w.path: np.array(w.numpy()) for w in backbone_of(result.model).weights}


def test_frozen_changes_no_backbone_weight_but_trains_the_head(bundle):
    spec = tiny_spec("frozen", epochs=1)
    before = backbone_snapshot(spec, bundle)
    result = train(spec, bundle=bundle)
    after = trained_backbone_weights(result)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    head = result.model.get_layer("classifier")
    assert result.trainable_params == sum(int(np.prod(w.shape)) for w in head.weights)


def test_finetune_changes_only_the_unfrozen_top_and_never_batchnorm_statistics(bundle):
    spec = tiny_spec("finetune", epochs=1, fine_tune_layers=10, fine_tune_learning_rate=1e-2)
    before = backbone_snapshot(spec, bundle)
    result = train(spec, bundle=bundle)
    backbone = backbone_of(result.model)
    top = {w.path for layer in backbone.layers[-10:] for w in layer.weights}
    after = trained_backbone_weights(result)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed, "fine-tuning changed nothing"
    assert changed <= top
    moving = {k for k in before if "moving" in k}
    assert moving and not (changed & moving)


def test_two_stage_numbers_epochs_on_and_lowers_the_learning_rate(bundle):
    spec = tiny_spec("frozen_then_finetune", epochs=2, fine_tune_epochs=1, fine_tune_layers=5)
    observer = RecordingObserver()
    result = train(spec, bundle=bundle, observer=observer)
    events = observer.epochs
    assert [(e.epoch, e.stage) for e in events] == [(1, "frozen"), (2, "frozen"), (3, "finetune")]
    assert events[2].learning_rate == pytest.approx(spec.train.fine_tune_learning_rate)
    assert events[0].learning_rate == pytest.approx(spec.train.learning_rate)
    assert result.history == events
    assert all(e.images_per_second > 0 and e.seconds > 0 for e in events)


def test_stop_request_ends_at_the_next_batch_keeping_finished_epochs(bundle):
    spec = tiny_spec("frozen", epochs=5, feature_cache=False)
    observer = RecordingObserver(stop_when=lambda seen: len(seen.batches) >= 1 and bool(seen.epochs))
    result = train(spec, bundle=bundle, observer=observer)
    assert result.status == "stopped"
    assert [e.epoch for e in result.history] == [1]
    steps = -(-len(bundle.train) // spec.train.batch_size)
    assert len(observer.batches) == steps + 1


def test_a_head_on_cached_features_reports_and_stops_once_per_epoch(bundle):
    spec = tiny_spec("frozen", epochs=5)
    steps = -(-len(bundle.train) // spec.train.batch_size)
    assert steps > 1
    observer = RecordingObserver(stop_when=lambda seen: bool(seen.epochs))
    result = train(spec, bundle=bundle, observer=observer)
    assert result.status == "stopped"
    assert [e.epoch for e in result.history] == [1]
    assert [(p.batch, p.steps) for p in observer.batches] == [(steps, steps)] * 2


def test_same_seed_same_metrics(bundle):
    spec = tiny_spec("frozen", epochs=2)
    first, second = train(spec, bundle=bundle), train(spec, bundle=bundle)
    assert [e.loss for e in first.history] == pytest.approx([e.loss for e in second.history], rel=1e-6)
    other = train(dataclasses.replace(spec, train=dataclasses.replace(spec.train, seed=7)), bundle=bundle)
    assert [e.loss for e in other.history] != pytest.approx([e.loss for e in first.history], rel=1e-6)


def test_plan_for_each_strategy(bundle):
    backbone = keras.Sequential([keras.Input((4,)), *[keras.layers.Dense(2) for _ in range(8)]])
    plans = {s: plan_stages(tiny_spec(s, fine_tune_epochs=2).train, backbone) for s in
             ("scratch", "frozen", "finetune", "frozen_then_finetune")}
    assert plans["scratch"][0].policy.trainable_top is None
    assert plans["frozen"][0].policy.trainable_top == 0
    assert plans["finetune"][0].policy.trainable_top == 2
    assert [s.name for s in plans["frozen_then_finetune"]] == ["frozen", "finetune"]


def test_a_run_resumes_after_its_last_checkpoint(bundle, tmp_path):
    spec = tiny_spec("frozen_then_finetune", epochs=2, fine_tune_epochs=1, fine_tune_layers=5)
    full = train(spec, bundle=bundle)
    folder = tmp_path / "checkpoint"
    first = train(spec, bundle=bundle, checkpoint_dir=folder,
                  observer=RecordingObserver(stop_when=lambda seen: len(seen.epochs) >= 1))
    assert first.status == "stopped" and [e.epoch for e in first.history] == [1]
    resumed = train(spec, bundle=bundle, checkpoint_dir=folder)
    assert [(e.epoch, e.stage) for e in resumed.history] == [(2, "frozen"), (3, "finetune")]
    assert any("Resumed after epoch 1" in n for n in resumed.notes)
    assert resumed.history[0].loss == pytest.approx(full.history[1].loss, rel=0.05)


def small_compiled_model(optimizer: str, build_state_first: bool) -> keras.Model:
    """A dropout + dense classifier on 8 features, compiled as a stage (or by Keras alone)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Dropout(0.2)(inputs)))
    spec = TrainSpec(optimizer=optimizer, label_smoothing=0.1)
    if build_state_first:
        compile_for_stage(model, spec, learning_rate=1e-2)
    else:
        model.compile(optimizer=OPTIMIZER_FACTORIES[optimizer](1e-2),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                      metrics=["accuracy"])
    return model


def fit_small(model: keras.Model) -> keras.callbacks.History:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    return model.fit(x, y, batch_size=16, epochs=2, validation_data=(x[:8], y[:8]), verbose=0)


def traces_of_train_step(model: keras.Model) -> int:
    """Fit the model and count how often TensorFlow ran the Python train step (= traced it)."""
    traces = []
    step = model.train_step

    def counted(data):
        traces.append(1)
        return step(data)

    model.train_step = counted
    fit_small(model)
    return len(traces)


def test_a_stage_traces_its_training_step_once_where_keras_alone_traces_it_twice():
    assert traces_of_train_step(small_compiled_model("adam", build_state_first=False)) == 2
    assert traces_of_train_step(small_compiled_model("adam", build_state_first=True)) == 1


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_FACTORIES))
def test_building_the_training_state_first_trains_bit_for_bit_the_same(optimizer):
    plain = small_compiled_model(optimizer, build_state_first=False)
    plain_history = fit_small(plain).history
    built = small_compiled_model(optimizer, build_state_first=True)
    built_history = fit_small(built).history
    assert built_history == plain_history
    assert len(plain.weights) == len(built.weights)
    for a, b in zip(plain.weights, built.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert plain.optimizer.iterations.numpy() == built.optimizer.iterations.numpy() == 6


def test_a_hidden_layer_and_weight_decay_reach_the_model_and_optimizer():
    from tlcore.training.compiling import make_optimizer

    spec = tiny_spec(head_hidden_units=24, weight_decay=0.01, optimizer="sgd")
    result = train(spec)
    hidden = result.model.get_layer("hidden")
    assert hidden.units == 24 and hidden.activation.__name__ == "relu"
    assert make_optimizer(spec.train, 0.1).weight_decay == pytest.approx(0.01)
    assert make_optimizer(tiny_spec().train, 0.1).weight_decay is None
