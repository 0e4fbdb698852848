"""Each run's TensorBoard events hold what it trained: per-epoch scalars, its settings, its test results."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from reports import EPOCHS, small_report
from specs import tiny_spec
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tlcore.runs.tensorboard_log import FOLDER, TensorBoardObserver, confusion_image, hparams_of


def events(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_events_hold_the_epochs_settings_and_test_results(tmp_path):
    spec = tiny_spec(schedule="cosine")
    observer = TensorBoardObserver(tmp_path, spec, "run123")
    for record in EPOCHS:
        observer.on_epoch(record)
    assert observer.close(small_report()) is None
    logged = events(tmp_path / FOLDER)
    values = {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in logged.Tensors(tag)]
              for tag in logged.Tags()["tensors"] if tag != "test/confusion_matrix"
              and not tag.startswith("_hparams_")}
    image = tf.make_ndarray(logged.Tensors("test/confusion_matrix")[0].tensor_proto)
    assert tf.io.decode_png(image[2]).shape[-1] == 3  # [width, height, PNG bytes]
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_second"):
        steps, logged_values = zip(*values[f"epoch/{name}"], strict=True)
        assert steps == (1, 2)
        np.testing.assert_allclose(logged_values, [getattr(e, name) for e in EPOCHS], rtol=1e-6)
    assert values["test/accuracy"] == [(0, 0.875)] and values["test/macro_f1"][0][0] == 0
    hparams_tags = [tag for tag in logged.Tags()["tensors"] if tag.startswith("_hparams_/session_start")]
    assert hparams_tags
    content = logged.SummaryMetadata(hparams_tags[0]).plugin_data.content
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.group_name == "run123"
    assert start.hparams["train.schedule"].string_value == "cosine"
    assert start.hparams["train.epochs"].number_value == spec.train.epochs


def test_the_confusion_matrix_is_an_image_darker_where_more_images_fall(tmp_path):
    picture = confusion_image([[9, 1], [0, 10]], ["a", "b"])[0]
    assert picture.shape[2] == 3 and picture.dtype == np.uint8

    def centre(row: int, col: int) -> np.ndarray:
        return picture[6 + row * 28 + 20, 6 + col * 28 + 20]

    assert centre(0, 0)[0] < centre(0, 1)[0] and centre(1, 1)[0] < centre(1, 0)[0]


def test_settings_become_flat_hparams():
    values = hparams_of(tiny_spec(augmentations=("flip", "zoom")))
    assert values["train.augmentations"] == "flip,zoom"
    assert values["backbone.alpha"] == 0.35 and values["dataset.data_dir"] == "None"
    assert all(isinstance(v, (bool, int, float, str)) for v in values.values())


def test_a_folder_that_cannot_be_written_stops_logging_without_failing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    observer = TensorBoardObserver(blocker, tiny_spec(), "run1")
    observer.on_epoch(EPOCHS[0])
    failure = observer.close(small_report())
    assert failure is not None and failure.startswith("TensorBoard logging stopped")
