"""Run an exported model file on the run's test images, as a deployment would.

Conversion can change predictions (8-bit weights do a little, integer activations more), and
people deploy the file, not the studio's model. So every export is measured against the
studio's own model on the same test images: both accuracies and how often the two agree on the
top class. A full-integer file is fed and read as a device does: uint8 pixels in, quantised
probabilities out, turned back into probabilities with the scale and zero point it declares.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tlcore.data import Split
from tlcore.deploy.onnx_export import onnx_runner
from tlcore.deploy.serving import LoadedRun
from tlcore.errors import DatasetError

CHECK_IMAGES = 300
"""At most this many test images (a seeded sample): enough to see a change of a few points."""
SAVED_MODEL_BATCH = 32
FLOAT_KINDS = "f"
"""``numpy.dtype.kind`` of tensors that a full-integer model must not have."""


@dataclass(frozen=True)
class ExportCheck:
    """The exported file against the studio's model on the same test images."""

    images: int
    test_images: int
    exported_accuracy: float
    studio_accuracy: float
    agreement: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        sample = "" if self.images == self.test_images else f" (a sample of {self.test_images})"
        return (f"On {self.images} test images{sample}: this file {self.exported_accuracy:.1%}, "
                f"the studio's model {self.studio_accuracy:.1%}; same top class on "
                f"{self.agreement:.1%} of them.")


@dataclass(frozen=True)
class TensorIO:
    """How a LiteRT input or output is fed or read: ``real = scale * (stored - zero_point)``.

    A float tensor has scale 0 (LiteRT's way of saying "not quantised").
    """

    dtype: str
    scale: float
    zero_point: int

    @property
    def quantised(self) -> bool:
        return np.dtype(self.dtype).kind in "iu"


@dataclass(frozen=True)
class TfliteIO:
    """A LiteRT file's input and output, and the tensors left in floating point."""

    input: TensorIO
    output: TensorIO
    float_tensors: tuple[str, ...]


def check_export(model_file: Path, keras_format: str, loaded: LoadedRun, test: Split) -> ExportCheck:
    """Accuracy of ``model_file`` and of the studio's model on the run's test split.

    Raises:
        DatasetError: The split has no images.
    """
    if len(test.labels) == 0:
        raise DatasetError("The run's dataset has no test images to check the export on.")
    picked = np.sort(np.random.default_rng(0).permutation(len(test.labels))[:CHECK_IMAGES])
    pixels = test.images[picked].astype(np.float32)
    labels = test.labels[picked]
    with loaded.lock:
        studio = loaded.model.predict(pixels, batch_size=SAVED_MODEL_BATCH, verbose=0).argmax(axis=1)
    exported = runner_for(model_file, keras_format)(pixels).argmax(axis=1)
    return ExportCheck(
        images=len(picked),
        test_images=len(test.labels),
        exported_accuracy=float(np.mean(exported == labels)),
        studio_accuracy=float(np.mean(studio == labels)),
        agreement=float(np.mean(exported == studio)),
    )


def runner_for(model_file: Path, keras_format: str) -> Callable[[np.ndarray], np.ndarray]:
    """float32 pixels in [0, 255] -> probabilities, through the runtime the format is made for."""
    runners = {"litert": _tflite_runner, "onnx": onnx_runner, "tf_saved_model": _saved_model_runner}
    return runners[keras_format](model_file)


def tflite_interpreter(model_file: Path) -> tf.lite.Interpreter:
    """The LiteRT package's interpreter where installed, else TensorFlow's copy; tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorFlow's copy announces its move to ai_edge_litert
        interpreter = Interpreter(model_path=str(model_file))
    interpreter.allocate_tensors()
    return interpreter


def tflite_io(model_file: Path) -> TfliteIO:
    """What a device needs to know to feed and read the file, and what did not become integer."""
    interpreter = tflite_interpreter(model_file)
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    floats = tuple(detail["name"] for detail in interpreter.get_tensor_details()
                   if np.dtype(detail["dtype"]).kind in FLOAT_KINDS)
    return TfliteIO(_tensor_io(source), _tensor_io(sink), floats)


def _tensor_io(detail: dict[str, Any]) -> TensorIO:
    scale, zero_point = detail["quantization"]
    return TensorIO(np.dtype(detail["dtype"]).name, float(scale), int(zero_point))


def quantise(pixels: np.ndarray, io: TensorIO) -> np.ndarray:
    """Real values as the tensor stores them (unchanged for a float tensor)."""
    if not io.quantised:
        return pixels.astype(io.dtype)
    limits = np.iinfo(io.dtype)
    stored = np.round(pixels / io.scale + io.zero_point)
    return np.clip(stored, limits.min, limits.max).astype(io.dtype)


def dequantise(values: np.ndarray, io: TensorIO) -> np.ndarray:
    """Stored values as the real numbers they stand for (float32)."""
    if not io.quantised:
        return values.astype(np.float32)
    return ((values.astype(np.float32) - io.zero_point) * io.scale).astype(np.float32)


def _tflite_runner(model_file: Path) -> Callable[[np.ndarray], np.ndarray]:
    """One image per call, as on a phone, fed and read in the file's own types."""
    interpreter = tflite_interpreter(model_file)
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    source_io, sink_io = _tensor_io(source), _tensor_io(sink)

    def run(pixels: np.ndarray) -> np.ndarray:
        rows = []
        for image in pixels:
            interpreter.set_tensor(source["index"], quantise(image[None], source_io))
            interpreter.invoke()
            rows.append(dequantise(interpreter.get_tensor(sink["index"])[0], sink_io))
        return np.array(rows)

    return run


def _saved_model_runner(folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    served = tf.saved_model.load(str(folder))

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.concatenate([served.serve(tf.constant(pixels[start:start + SAVED_MODEL_BATCH])).numpy()
                               for start in range(0, len(pixels), SAVED_MODEL_BATCH)])

    return run
