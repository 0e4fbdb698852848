""""Not sure": below a confidence threshold the answer is no class, the same in the API and the CLI."""

import json
import math
import threading

import keras
import numpy as np
import pytest
from PIL import Image

from tlcore.cli import main
from tlcore.deploy.serving import NOT_SURE, Answer, LoadedRun, check_threshold
from tlcore.errors import ConfigError
from tlcore.report.evaluate import Prediction

PROBABILITIES = (0.5, 0.3, 0.2)


def fixed_model() -> keras.Model:
    """Answers 50 % a, 30 % b, 20 % c for every image (zero weights, the logits as bias)."""
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(3, activation="softmax", kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant(np.log(PROBABILITIES)))
    return keras.Model(inputs, dense(pooled))


def loaded() -> LoadedRun:
    return LoadedRun("abc123", fixed_model(), ["a", "b", "c"], 16, threading.Lock())


def test_an_answer_names_the_top_class_unless_none_reaches_the_threshold():
    predictions = [Prediction("cat", 0.55), Prediction("dog", 0.45)]
    assert Answer(predictions).label == "cat" and Answer(predictions).sure
    assert Answer(predictions, 0.55).label == "cat", "reaching the threshold is enough"
    below = Answer(predictions, 0.6)
    assert not below.sure and below.label is None and below.describe() == NOT_SURE
    assert Answer(predictions, 0.0).label == "cat"
    assert Answer([], 0.5).label is None


@pytest.mark.parametrize("threshold", [-0.1, 1.01, 60, math.nan, True, "0.5"])
def test_a_threshold_outside_0_to_1_is_a_config_error(threshold):
    with pytest.raises(ConfigError, match="from 0 to 1") as caught:
        check_threshold(threshold)
    assert caught.value.hint


def test_classify_applies_the_threshold_to_every_image():
    pixels = np.full((16, 16, 3), 90, np.uint8)
    run = loaded()
    sure, unsure = run.classify([pixels], threshold=0.4), run.classify([pixels, pixels], threshold=0.6)
    assert [a.label for a in sure] == ["a"] and [a.describe() for a in unsure] == [NOT_SURE, NOT_SURE]
    assert [p.label for p in unsure[0].predictions] == ["a", "b", "c"], "the guesses are still shown"
    assert unsure[0].predictions[0].probability == pytest.approx(0.5, abs=1e-5)
    assert run.classify([pixels])[0].label == "a", "off by default"
    with pytest.raises(ConfigError):
        run.classify([pixels], threshold=2)


@pytest.fixture
def image(tmp_path, monkeypatch):
    run = loaded()
    monkeypatch.setattr("tlcore.deploy.serving.load_run", lambda run_id: run)
    path = tmp_path / "pic.png"
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(path)
    return str(path)


def test_cli_predict_takes_the_same_threshold(image, capsys):
    assert main(["predict", "abc123", image, "--threshold", "0.6", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["answer"] is None and [p["label"] for p in result["predictions"]] == ["a", "b", "c"]
    assert main(["predict", "abc123", image, "--threshold", "0.4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["answer"] == "a"
    assert main(["predict", "abc123", image, "--threshold", "0.6"]) == 0
    assert capsys.readouterr().out == f"{image}: not sure (a 0.50, b 0.30, c 0.20)\n"
    assert main(["predict", "abc123", image]) == 0
    assert capsys.readouterr().out == f"{image}: a 0.50, b 0.30, c 0.20\n"


@pytest.mark.parametrize("threshold", ["1.5", "-1", "nan", "sixty"])
def test_cli_refuses_a_bad_threshold_with_one_line_and_exit_2(image, capsys, threshold):
    assert main(["predict", "abc123", image, "--threshold", threshold]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error:")
