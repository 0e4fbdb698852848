"""ONNX: the run's model for ONNX Runtime, TensorRT, OpenVINO and other runtimes outside TensorFlow.

Keras writes the file through tf2onnx (``model.export(format="onnx")``) and the studio checks it
with ONNX Runtime, as a deployment would run it. Both packages are optional: without them only
this format is refused, with what to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tlcore.errors import ExportError

if TYPE_CHECKING:
    import onnxruntime

ONNX_OPSET = 17
"""Fixed so every export of a run reads the same everywhere: ONNX Runtime 1.11+, TensorRT 8.6+
and OpenVINO 2022+ all run opset 17."""
ONNX_BATCH = 32
NEEDED = ("tf2onnx", "onnxruntime")


@dataclass(frozen=True)
class OnnxNames:
    """The tensor names a program feeds and fetches (``session.run([output], {input: x})``)."""

    input: str
    output: str


def require_onnx() -> None:
    """Refuse the ONNX format up front when its converter or runtime is missing.

    Raises:
        ExportError: tf2onnx or onnxruntime is not installed.
    """
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"The ONNX export needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            "not installed here.",
            "Install the project's requirements (pip install -r requirements.txt), or pick another format.",
        )


def _session(model_file: Path) -> onnxruntime.InferenceSession:
    import onnxruntime  # only where ONNX is used: the other formats work without it

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise
    return onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def onnx_names(model_file: Path) -> OnnxNames:
    """What the converter called the model's input and output (tf2onnx picks the output's name)."""
    session = _session(model_file)
    return OnnxNames(session.get_inputs()[0].name, session.get_outputs()[0].name)


def onnx_runner(model_file: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Batches of float32 pixels through ONNX Runtime on the CPU, as a server would run them."""
    session = _session(model_file)
    source = session.get_inputs()[0].name

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {source: pixels[start:start + ONNX_BATCH]})[0]
                               for start in range(0, len(pixels), ONNX_BATCH)])

    return run
