"""Discriminative learning rates: each layer group steps at its share of the stage's rate."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from specs import tiny_spec

from tlcore.backbones import build_backbone
from tlcore.backbones.blocks import layer_groups
from tlcore.config import TrainSpec
from tlcore.data import load_dataset
from tlcore.training.cached_stage import plan_cut
from tlcore.training.checkpoint import Checkpoint, save_checkpoint
from tlcore.training.compiling import OPTIMIZER_FACTORIES, compile_for_stage, make_optimizer
from tlcore.training.layer_rates import (
    LayerRateAdam,
    LayerRates,
    group_shares,
    rate_multipliers,
    stage_rate_multipliers,
    with_layer_rates,
)
from tlcore.training.loop import train
from tlcore.training.model import FreezePolicy, backbone_of, build_classifier
from tlcore.training.schedules import learning_rate

ROOT = Path(__file__).resolve().parents[3]
FLOAT32_ROUNDING = 1e-7
"""A change read back from float32 weights of size up to 1 is off by up to this much."""


def stacked_model() -> keras.Model:
    """Three hidden layers (low, mid, top) under a softmax head."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,))
    x = inputs
    for name in ("low", "mid", "top"):
        x = keras.layers.Dense(8, activation="tanh", name=name)(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))


def groups_of(model: keras.Model) -> list[list[keras.layers.Layer]]:
    return [[model.get_layer(name)] for name in ("top", "mid", "low")]


def toy_data(count: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, count)
    return rng.normal(size=(count, 6)).astype(np.float32), np.eye(3, dtype=np.float32)[labels]


def gradients(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    with tf.GradientTape() as tape:
        loss = model.loss(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    return {v.path: np.array(g) for v, g in zip(model.trainable_variables, grads, strict=True)}


def one_step(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[dict, dict]:
    """Each trainable variable's gradient and the change one whole-batch step made to it."""
    grads = gradients(model, x, y)
    before = {v.path: np.array(v.numpy()) for v in model.trainable_variables}
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return grads, {v.path: v.numpy() - before[v.path] for v in model.trainable_variables}


def test_shares_fall_geometrically_to_the_floor_like_fastais_slice():
    assert group_shares(2, 0.01) == pytest.approx([0.1, 0.01])
    assert group_shares(3, 0.001) == pytest.approx([0.1, 0.01, 0.001])
    assert group_shares(1, 0.05) == pytest.approx([0.05])
    assert group_shares(4, 1.0) == [1.0] * 4


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_each_groups_first_step_moves_at_its_rate(optimizer):
    model, (x, y), rate = stacked_model(), toy_data(), 0.5
    multipliers = rate_multipliers(groups_of(model), floor=0.1)
    compile_for_stage(model, TrainSpec(optimizer=optimizer), rate, rate_multipliers=multipliers)
    grads, deltas = one_step(model, x, y)
    assert sorted(set(multipliers.values()), reverse=True) == pytest.approx(group_shares(3, 0.1))
    for path, delta in deltas.items():
        share = multipliers.get(path, 1.0)
        if optimizer == "sgd":  # momentum starts at zero: the first step is -rate * gradient
            np.testing.assert_allclose(delta, -rate * share * grads[path], rtol=1e-4, atol=FLOAT32_ROUNDING,
                                       err_msg=path)
        else:  # Adam's first step is the rate, whatever the gradient's size (well above epsilon)
            moved = np.abs(grads[path]) > 1e-3
            np.testing.assert_allclose(np.abs(delta[moved]), rate * share, rtol=0.01, err_msg=path)
    assert multipliers.keys() == {v.path for name in ("low", "mid", "top")
                                  for v in model.get_layer(name).weights}


def test_weight_decay_is_scaled_with_each_groups_rate():
    model, (x, y), rate, decay = stacked_model(), toy_data(), 0.5, 0.1
    multipliers = rate_multipliers(groups_of(model), floor=0.1)
    before = {v.path: np.array(v.numpy()) for v in model.trainable_variables}
    model.compile(optimizer=with_layer_rates(keras.optimizers.SGD(rate, weight_decay=decay), multipliers),
                  loss=keras.losses.CategoricalCrossentropy())
    grads, deltas = one_step(model, x, y)
    for path, delta in deltas.items():
        step = rate * multipliers.get(path, 1.0)
        np.testing.assert_allclose(delta, -step * decay * before[path] - step * grads[path], rtol=1e-4,
                                   atol=FLOAT32_ROUNDING, err_msg=path)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_FACTORIES))
def test_shares_of_one_train_bit_for_bit_like_keras_own_optimizer(optimizer):
    spec, (x, y) = TrainSpec(optimizer=optimizer, weight_decay=0.01), toy_data(48)
    plain, layered = stacked_model(), stacked_model()
    compile_for_stage(plain, spec, 0.01)
    compile_for_stage(layered, spec, 0.01, rate_multipliers={"low/kernel": 1.0})
    assert isinstance(layered.optimizer, LayerRates) and not isinstance(plain.optimizer, LayerRates)
    for model in (plain, layered):
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(plain.weights, layered.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_floor_one_keeps_keras_own_optimizer():
    spec = tiny_spec("finetune", fine_tune_layers=10)
    model = stacked_model()
    assert stage_rate_multipliers(spec, model, FreezePolicy(trainable_top=10)) is None
    assert type(make_optimizer(spec.train, 1e-3, None)) is keras.optimizers.Adam
    lowered = dataclasses.replace(spec, train=dataclasses.replace(spec.train, discriminative_floor=0.1))
    assert stage_rate_multipliers(lowered, model, FreezePolicy(trainable_top=0)) is None
    assert stage_rate_multipliers(lowered, model, FreezePolicy(trainable_top=None)) is None


LOAD_ELSEWHERE = """
import sys
import keras
import tlcore.training.layer_rates, tlcore.training.schedules
optimizer = keras.saving.load_model(sys.argv[1], safe_mode=True).optimizer
print(type(optimizer).__name__, optimizer.get_config()["learning_rate"]["class_name"])
"""


def loaded_elsewhere(path: Path) -> str:
    """Load a saved model in a fresh process that imports only the modules registering the classes."""
    done = subprocess.run([sys.executable, "-c", LOAD_ELSEWHERE, str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip().splitlines()[-1]


def test_a_model_with_layer_rates_and_a_schedule_saves_loads_and_trains_on_alike(tmp_path):
    model, (x, y) = stacked_model(), toy_data()
    multipliers = rate_multipliers(groups_of(model), floor=0.01)
    schedule = learning_rate("one_cycle", 0.01, 8, 0.1)
    compile_for_stage(model, TrainSpec(), schedule, rate_multipliers=multipliers)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert type(loaded.optimizer) is LayerRateAdam
    assert loaded.optimizer.rate_multipliers == multipliers
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for trained in (model, loaded):
        trained.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)
    assert loaded_elsewhere(tmp_path / "model.keras") == "LayerRateAdam WarmupCosine"
    save_checkpoint(tmp_path / "checkpoint", model, epoch=2)
    fresh = stacked_model()
    Checkpoint.load(tmp_path / "checkpoint").restore(fresh)
    for a, b in zip(model.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_part_above_a_feature_cut_steps_the_shared_backbone_layers_at_their_rates():
    spec = tiny_spec("finetune", dropout=0.0)
    keras.utils.set_random_seed(0)
    model = build_classifier(build_backbone(spec.backbone, spec.dataset.image_size), 3,
                             spec.dataset.image_size, spec.train)
    policy = FreezePolicy(trainable_top=12)
    backbone = backbone_of(model)
    policy.apply(backbone)
    upper = plan_cut(model, policy).upper
    groups = [backbone.layers[-6:], backbone.layers[-12:-6]]
    multipliers = rate_multipliers(groups, floor=0.01)
    compile_for_stage(upper, TrainSpec(optimizer="sgd"), 0.5, rate_multipliers=multipliers)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *upper.input_shape[1:])).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    grads, deltas = one_step(upper, x, y)
    shares = {multipliers.get(path, 1.0) for path in deltas}
    assert sorted(shares) == pytest.approx([0.01, 0.1, 1.0])  # the head and both groups train
    for path, delta in deltas.items():
        np.testing.assert_allclose(delta, -0.5 * multipliers.get(path, 1.0) * grads[path], rtol=1e-3,
                                   atol=FLOAT32_ROUNDING, err_msg=path)
    assert {id(v) for v in upper.trainable_variables} <= {id(v) for v in model.trainable_variables}


@pytest.fixture(scope="module")
def bundle():
    return load_dataset(tiny_spec().dataset)


def test_a_fine_tuning_run_steps_its_lowest_block_at_the_floor(bundle):
    spec = tiny_spec("finetune", epochs=1, fine_tune_layers=30, fine_tune_learning_rate=1e-3)
    floored = dataclasses.replace(spec, train=dataclasses.replace(spec.train, discriminative_floor=0.01))
    moves = []
    for run_spec in (spec, floored):
        keras.utils.set_random_seed(run_spec.train.seed)
        start = build_classifier(build_backbone(run_spec.backbone, 48), 5, 48, run_spec.train)
        result = train(run_spec, bundle=bundle)
        lowest = layer_groups(backbone_of(result.model), run_spec.backbone.name, 30)[-1]
        before = {w.path: w.numpy() for w in backbone_of(start).weights}
        moves.append(np.mean([np.abs(w.numpy() - before[w.path]).mean()
                              for layer in lowest for w in layer.trainable_weights]))
    assert any("backbone groups from" in note for note in result.notes)
    assert moves[1] < 0.05 * moves[0]
