"""Run an exported model file on the run's test images, as a deployment would.

Conversion can change predictions (8-bit weights do, a little), and people deploy the file, not
the studio's model. So every export is measured against the studio's own model on the same test
images: both accuracies and how often the two agree on the top class.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tlcore.config import DatasetSpec
from tlcore.data import load_dataset
from tlcore.deploy.serving import LoadedRun
from tlcore.errors import DatasetError

CHECK_IMAGES = 300
"""At most this many test images (a seeded sample): enough to see a change of a few points."""
SAVED_MODEL_BATCH = 32


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


def check_export(model_file: Path, keras_format: str, loaded: LoadedRun, dataset: DatasetSpec) -> ExportCheck:
    """Accuracy of ``model_file`` and of the studio's model on the run's test split.

    Raises:
        DatasetError: The test images cannot be loaded any more (the dataset moved or was
            deleted), or there are none.
    """
    test = load_dataset(dataset).test
    if len(test.labels) == 0:
        raise DatasetError("The run's dataset has no test images to check the export on.")
    picked = np.sort(np.random.default_rng(0).permutation(len(test.labels))[:CHECK_IMAGES])
    pixels = test.images[picked].astype(np.float32)
    labels = test.labels[picked]
    with loaded.lock:
        studio = loaded.model.predict(pixels, batch_size=SAVED_MODEL_BATCH, verbose=0).argmax(axis=1)
    run_file = _tflite_runner(model_file) if keras_format == "litert" else _saved_model_runner(model_file)
    exported = run_file(pixels).argmax(axis=1)
    return ExportCheck(
        images=len(picked),
        test_images=len(test.labels),
        exported_accuracy=float(np.mean(exported == labels)),
        studio_accuracy=float(np.mean(studio == labels)),
        agreement=float(np.mean(exported == studio)),
    )


def _tflite_runner(model_file: Path) -> Callable[[np.ndarray], np.ndarray]:
    """One image per call, as on a phone; the LiteRT package's interpreter where installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorFlow's copy announces its move to ai_edge_litert
        interpreter = Interpreter(model_path=str(model_file))
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def run(pixels: np.ndarray) -> np.ndarray:
        rows = []
        for image in pixels:
            interpreter.set_tensor(source, image[None])
            interpreter.invoke()
            rows.append(interpreter.get_tensor(sink)[0].copy())
        return np.array(rows)

    return run


def _saved_model_runner(folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    served = tf.saved_model.load(str(folder))

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.concatenate([served.serve(tf.constant(pixels[start:start + SAVED_MODEL_BATCH])).numpy()
                               for start in range(0, len(pixels), SAVED_MODEL_BATCH)])

    return run
