"""Several devices (MirroredStrategy on two logical CPUs, in a subprocess) and mixed precision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from specs import tiny_spec

from tlcore.errors import ConfigError
from tlcore.training.distribution import Placement, choose_placement, split_over_replicas
from tlcore.training.loop import train
from tlcore.training.model import build_head
from tlcore.training.precision import MIXED_POLICY, features_dtype_key, precision_policy

HELPER = Path(__file__).with_name("mirrored_run.py")
WEIGHT_TOLERANCE = 1e-6
"""Measured: 6e-8 at most over every weight after 2 head epochs and 1 fine-tuning epoch."""

CPU = Placement(("/device:CPU:0",))
GPU = Placement(("/device:GPU:0",))


@pytest.mark.slow  # two runs in a fresh process: 60-120 s on the shared two cores
def test_two_devices_train_the_same_model_as_one_and_share_its_feature_store(tmp_path):
    done = subprocess.run([sys.executable, str(HELPER), "frozen_then_finetune", "2", "1"],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    mirrored, single = result["notes"]["mirrored"], result["notes"]["single"]
    assert "2 devices" in mirrored[0] and "split 16 + 16" in mirrored[0]
    assert not any("MirroredStrategy" in line for line in single)
    assert any("350 image(s) computed as they were decoded" in line for line in mirrored)
    forwarded = [line for line in single if "image(s) forwarded" in line]
    assert len(forwarded) == 2 and all(": 0 image(s) forwarded" in line for line in forwarded)
    assert result["accuracy"]["mirrored"] == result["accuracy"]["single"]
    np.testing.assert_allclose(result["val_loss"]["mirrored"], result["val_loss"]["single"], rtol=1e-6)
    assert result["max_weight_difference"] <= WEIGHT_TOLERANCE
    assert result["rows_predicted_after_training"] == 5
    assert "cannot be split evenly over 2 devices" in result["odd_batch_refusal"]


def test_a_frozen_run_on_two_devices_matches_one_device():
    """The default suite's check of the MirroredStrategy path (about 15 s); the slow test above
    adds fine-tuning."""
    done = subprocess.run([sys.executable, str(HELPER), "frozen", "2", "0"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert "2 devices" in result["notes"]["mirrored"][0]
    assert result["accuracy"]["mirrored"] == result["accuracy"]["single"]
    np.testing.assert_allclose(result["val_loss"]["mirrored"], result["val_loss"]["single"], rtol=1e-6)
    assert result["max_weight_difference"] <= WEIGHT_TOLERANCE


@pytest.mark.parametrize("setting", ["tpu:2", "cpu:0", "cpu", "gpu:x", "two"])
def test_a_malformed_device_setting_is_refused_with_what_to_write(setting):
    with pytest.raises(ConfigError, match="auto, gpu:N or cpu:N"):
        choose_placement(setting)


def test_asking_for_missing_devices_says_how_many_there_are():
    with pytest.raises(ConfigError, match="asks for 2 GPU device.*0 are visible"):
        choose_placement("gpu:2")


def test_one_device_means_no_strategy_and_the_plain_forward(monkeypatch):
    monkeypatch.delenv("TL_DEVICES", raising=False)
    placement = choose_placement()
    assert placement.strategy is None and placement.replicas == 1 and not placement.on_gpu
    assert placement.describe(32) is None
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert split_over_replicas(model) == model.predict_on_batch


def test_mixed_precision_is_refused_on_the_cpu_before_any_work():
    with pytest.raises(ConfigError, match="needs a GPU.*CPU:0"):
        precision_policy(True, CPU)
    spec = tiny_spec(mixed_precision=True)
    with pytest.raises(ConfigError, match="Mixed precision"):
        train(spec)


def test_on_a_gpu_placement_the_policy_holds_while_the_run_builds_and_is_restored_after():
    with precision_policy(True, GPU):
        assert keras.mixed_precision.global_policy().name == MIXED_POLICY
    assert keras.mixed_precision.global_policy().name == "float32"
    with precision_policy(False, CPU):
        assert keras.mixed_precision.global_policy().name == "float32"


def test_the_softmax_stays_float32_under_mixed_precision_and_float16_features_get_their_own_key():
    with precision_policy(True, GPU):
        features = keras.Input((4, 4, 8))
        probabilities = build_head(features, num_classes=3, dropout=0.1, hidden_units=5)
        model = keras.Model(features, probabilities)
        pooled = keras.Model(features, model.get_layer("pool").output)
    assert model.get_layer("hidden").compute_dtype == "float16"
    assert model.get_layer("classifier").compute_dtype == "float32"
    assert probabilities.dtype == "float32"
    assert features_dtype_key(pooled) == {"dtype": "float16"}
    inputs = keras.Input((4,))
    assert features_dtype_key(keras.Model(inputs, keras.layers.Dense(2)(inputs))) == {}
