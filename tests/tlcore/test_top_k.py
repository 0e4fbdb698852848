"""A top-k outside 1..classes is refused, the same way in the API and the CLI, never changed."""

import json
import threading

import keras
import numpy as np
import pytest
from PIL import Image

from tlcore.cli import main
from tlcore.deploy.serving import LoadedRun
from tlcore.errors import ConfigError
from tlcore.report.evaluate import check_top_k, predict


def three_class_model() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("top_k", [0, -5, 4, 100000, 2.5, True, "2"])
def test_a_top_k_outside_one_to_the_number_of_classes_is_a_config_error(top_k):
    with pytest.raises(ConfigError) as caught:
        check_top_k(top_k, 3)
    assert "from 1 to 3" in caught.value.message and repr(top_k) in caught.value.message
    assert caught.value.hint


@pytest.mark.parametrize("top_k", [1, 2, 3, np.int64(2)])
def test_a_top_k_in_range_is_kept(top_k):
    assert check_top_k(top_k, 3) == int(top_k)


@pytest.mark.parametrize("top_k", [0, -5, 100000])
def test_predict_refuses_before_decoding_anything(top_k):
    with pytest.raises(ConfigError, match="from 1 to 3"):
        predict(three_class_model(), ["a", "b", "c"], [b"not even an image"], 16, top_k=top_k)


def test_predict_answers_exactly_the_top_k_asked_and_defaults_to_what_the_model_has():
    pixels = np.full((16, 16, 3), 90, np.uint8)
    model = three_class_model()
    assert [len(p) for p in predict(model, ["a", "b", "c"], [pixels, pixels], 16, top_k=3)] == [3, 3]
    assert len(predict(model, ["a", "b", "c"], [pixels], 16)[0]) == 3
    two = keras.Model(model.input, keras.layers.Dense(2, activation="softmax")(model.layers[-2].output))
    assert len(predict(two, ["a", "b"], [pixels], 16)[0]) == 2  # the default never exceeds the classes


@pytest.mark.parametrize("top_k", ["0", "-5", "100000"])
def test_cli_predict_refuses_a_top_k_with_one_line_and_exit_2(monkeypatch, tmp_path, capsys, top_k):
    loaded = LoadedRun("abc123", three_class_model(), ["a", "b", "c"], 16, threading.Lock())
    monkeypatch.setattr("tlcore.deploy.serving.load_run", lambda run_id: loaded)
    image = tmp_path / "pic.png"
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(image)

    assert main(["predict", "abc123", str(image), "--top-k", top_k]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("error: Top-k must be a whole number from 1 to 3") and f"got {top_k}" in err

    assert main(["predict", "abc123", str(image), "--top-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["predictions"]) == 3
