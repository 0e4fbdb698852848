"""Export a finished run's model for deployment outside the studio.

A ``.keras`` file needs Python, Keras and tlcore's registered layers. Phones, edge devices and
model servers want LiteRT (TFLite), ONNX or a SavedModel instead, with the class names beside the
model. Each export is one zip under the run's folder, written atomically, built once and
reused until the run's model changes; deleting the run deletes its exports.

Every model takes RGB pixels in [0, 255] at the run's image size, float32 (uint8 for the
full-integer file, fed as they are): the backbone's preprocessing is a layer inside the model,
so a deployment only decodes and resizes. ONNX files are written by tf2onnx
(:mod:`tlcore.deploy.onnx_export`); every file is run on the test images before it is published
(:mod:`tlcore.deploy.export_check`).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tlcore.config import DatasetSpec
from tlcore.data import DatasetBundle, Split, load_dataset
from tlcore.data.labels import visible_label
from tlcore.deploy.export_check import ExportCheck, TensorIO, TfliteIO, check_export, tflite_io
from tlcore.deploy.onnx_export import ONNX_OPSET, onnx_names, require_onnx
from tlcore.deploy.serving import LoadedRun, load_run
from tlcore.errors import ConfigError, ExportError, StorageError, TLError, brief_reason
from tlcore.files import atomic_write
from tlcore.runs.store import RunStore

INPUT_NAME = "pixels"
"""The input's name in every format's signature (ONNX programs feed it by name)."""
CALIBRATION_IMAGES = 200
"""Training images (a seeded sample) the int8 converter measures activation ranges on: a few
hundred are plenty, and each costs a forward pass during conversion."""


@dataclass(frozen=True)
class ExportFormat:
    """One way to package a model: what people pick it for, and how Keras writes it.

    ``calibrated`` formats are full-integer: the converter needs the run's training images to
    choose each activation's range, and the file takes and returns uint8.
    """

    label: str
    purpose: str
    keras_format: str
    converter_settings: tuple[tuple[str, Any], ...] = ()
    calibrated: bool = False

    @property
    def model_name(self) -> str:
        return {"litert": "model.tflite", "onnx": "model.onnx"}.get(self.keras_format, "saved_model")


_SMALLER = ("optimizations", (tf.lite.Optimize.DEFAULT,))

EXPORT_FORMATS: dict[str, ExportFormat] = {
    "tflite": ExportFormat(
        "LiteRT / TFLite (float32)",
        "Android, iOS, Raspberry Pi and other edge devices; the same predictions as the studio.",
        "litert",
    ),
    "tflite_float16": ExportFormat(
        "LiteRT / TFLite, float16 weights",
        "Half the size of float32 with the same answers; phone GPUs run float16 natively, CPUs "
        "widen the weights back to float32 when loading.",
        "litert",
        (_SMALLER, ("target_spec", {"supported_types": [tf.float16]})),
    ),
    "tflite_quantized": ExportFormat(
        "LiteRT / TFLite, 8-bit weights",
        "About 3x smaller and faster on phones; probabilities can move by a few points.",
        "litert",
        (_SMALLER,),
    ),
    "tflite_int8": ExportFormat(
        "LiteRT / TFLite, full integer (int8, uint8 in and out)",
        "For integer-only accelerators (Coral Edge TPU, NPUs, microcontrollers): weights and "
        "activations in 8 bits, calibrated on the run's training images, uint8 pixels in. About "
        "as small as 8-bit weights; its answers move the most, so read its agreement.",
        "litert",
        (_SMALLER, ("target_spec", {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}),
         ("inference_input_type", tf.uint8), ("inference_output_type", tf.uint8)),
        calibrated=True,
    ),
    "onnx": ExportFormat(
        "ONNX (float32)",
        "ONNX Runtime, TensorRT, OpenVINO and other runtimes without TensorFlow; the same "
        "predictions as the studio.",
        "onnx",
        (("opset_version", ONNX_OPSET),),
    ),
    "saved_model": ExportFormat(
        "TensorFlow SavedModel",
        "TensorFlow Serving, or tf.saved_model.load in any TensorFlow program.",
        "tf_saved_model",
    ),
}


@dataclass(frozen=True)
class BuiltExport:
    """One format exported from the run's current model, as the side-by-side table lists it."""

    format_name: str
    path: Path
    zip_bytes: int
    model_bytes: int | None
    check: ExportCheck | None
    check_skipped: str | None

    @property
    def label(self) -> str:
        return EXPORT_FORMATS[self.format_name].label

    def row(self) -> dict[str, Any]:
        """The table's row: sizes in MiB, accuracies and agreement as shares (None: not checked)."""
        check = self.check
        return {
            "format": self.format_name,
            "model MB": _mebibytes(self.model_bytes),
            "zip MB": _mebibytes(self.zip_bytes),
            "accuracy": check.exported_accuracy if check else None,
            "studio accuracy": check.studio_accuracy if check else None,
            "agreement": check.agreement if check else None,
            "test images": check.images if check else None,
        }


def _mebibytes(size: int | None) -> float | None:
    return None if size is None else round(size / 2**20, 3)


def labels_text(class_names: list[str]) -> str:
    """The text of ``labels.txt``: exactly one line per model output, in output order."""
    return "".join(visible_label(name) + "\n" for name in class_names)


def metadata_path(export: Path) -> Path:
    return export.with_suffix(".json")


def export_metadata(export: Path) -> dict[str, Any] | None:
    """What ``metadata.json`` in the zip says (input, labels, the check on test images)."""
    try:
        return json.loads(metadata_path(export).read_text())
    except (OSError, ValueError):
        return None


def ready_export(run_id: str, format_name: str, store: RunStore) -> Path | None:
    """The export built from the run's current model, if there is one (a resumed run's is stale)."""
    artifacts = store.artifacts(run_id)
    target, model = artifacts.export(format_name), artifacts.model
    if target.exists() and model.exists() and target.stat().st_mtime >= model.stat().st_mtime:
        return target
    return None


def built_exports(run_id: str, store: RunStore | None = None) -> list[BuiltExport]:
    """Every format already exported from the run's current model, in :data:`EXPORT_FORMATS` order.

    Reads only the files beside each zip, so a page can list them on every rerun.
    """
    store = store or RunStore()
    found = (_built(run_id, format_name, store) for format_name in EXPORT_FORMATS)
    return [export for export in found if export is not None]


def _built(run_id: str, format_name: str, store: RunStore) -> BuiltExport | None:
    try:
        path = ready_export(run_id, format_name, store)
        zip_bytes = path.stat().st_size if path is not None else 0
    except OSError:  # deleted meanwhile, with its run
        return None
    metadata = export_metadata(path) if path is not None else None
    if path is None or metadata is None:
        return None
    check = metadata.get("check")
    return BuiltExport(format_name, path, zip_bytes, metadata.get("model_bytes"),
                       ExportCheck(**check) if check else None, metadata.get("check_skipped"))


def export_run(run_id: str, format_name: str, store: RunStore | None = None) -> Path:
    """The run's model as a deployable zip: the model, ``labels.txt`` and ``metadata.json``.

    The metadata holds how the exported file did on the run's test images next to the studio's
    model (``check``, see :func:`tlcore.deploy.export_check.check_export`), or why it could not be
    checked (``check_skipped``); :func:`export_metadata` reads it without opening the zip.

    Raises:
        ConfigError: ``format_name`` is not one of :data:`EXPORT_FORMATS`.
        RunNotFoundError, RunStateError, ArtifactError: As :func:`tlcore.deploy.serving.load_run`.
        ExportError: The converter refused the model, the file it wrote does not run, an int8
            file would still compute in float, its training images cannot be loaded, or the
            ONNX packages are missing (nothing is left behind).
        StorageError: The zip could not be written (disk full).
    """
    export_format = EXPORT_FORMATS.get(format_name)
    if export_format is None:
        raise ConfigError(
            f"Unknown export format {format_name!r}.",
            f"Choose one of: {', '.join(EXPORT_FORMATS)}.",
        )
    if export_format.keras_format == "onnx":
        require_onnx()
    store = store or RunStore()
    loaded = load_run(run_id, store)
    ready = ready_export(run_id, format_name, store)
    if ready is not None:
        return ready
    target = store.artifacts(run_id).export(format_name)
    dataset = store.get(run_id).spec.dataset
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            metadata = _build_package(loaded, format_name, dataset, Path(work) / "package")
            _publish(Path(work), metadata, target)
    except OSError as exc:
        raise StorageError(
            f"The export of run {run_id} could not be written ({exc.strerror or exc}).",
            "Free some disk space and try again.",
        ) from exc
    return target


def _build_package(
    loaded: LoadedRun, format_name: str, dataset: DatasetSpec, package: Path
) -> dict[str, Any]:
    """The model, checked on the test images, with its labels and metadata in ``package``."""
    export_format = EXPORT_FORMATS[format_name]
    package.mkdir()
    bundle, unavailable = _run_images(dataset)
    calibration = _calibration(loaded, bundle, unavailable) if export_format.calibrated else None
    model_file = package / export_format.model_name
    _write_model(loaded, export_format, model_file, calibration)
    metadata = {**_metadata(loaded, format_name, _io_metadata(model_file, export_format, loaded)),
                "model_bytes": _size(model_file)}
    if calibration is not None:
        metadata["calibration"] = {"split": "train", "images": len(calibration)}
    metadata.update(_checked(model_file, export_format, loaded, bundle, unavailable))
    # labels.txt is escaped, one line per output; metadata.json keeps the true names (JSON-escaped).
    (package / "labels.txt").write_text(labels_text(loaded.class_names), encoding="utf-8")
    (package / "metadata.json").write_text(json.dumps(metadata, indent=1), encoding="utf-8")
    return metadata


def _run_images(dataset: DatasetSpec) -> tuple[DatasetBundle | None, str]:
    """The run's splits from the pixel store, or why they cannot be loaded any more."""
    try:
        return load_dataset(dataset), ""
    except TLError as exc:
        return None, str(exc)


def calibration_images(train: Split, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """A seeded sample of ``count`` training images (uint8); the first has one black and one white pixel.

    The converter derives the uint8 input's scale from the smallest and largest value it sees.
    With 0 and 255 among them the scale is 1 and the zero point 0, so a device feeds its
    camera's pixels as they are and the model's own preprocessing sees the 0-255 it expects,
    whatever the range of the sampled photos.
    """
    picked = np.sort(np.random.default_rng(0).permutation(len(train.labels))[:count])
    images = np.array(train.images[picked], dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    return images


def _calibration(loaded: LoadedRun, bundle: DatasetBundle | None, unavailable: str) -> np.ndarray:
    if bundle is None or len(bundle.train.labels) == 0:
        reason = unavailable or "the dataset has no training images"
        raise ExportError(
            f"The int8 export of run {loaded.run_id} is calibrated on its training images, which "
            f"cannot be loaded ({reason}).",
            "Make the dataset available again, or export tflite_quantized or tflite_float16, "
            "which need no images.",
        )
    return calibration_images(bundle.train)


def _representative(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's representative dataset: one float32 image per sample, as the model takes."""
    def samples() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None].astype(np.float32)]

    return samples


def _checked(model_file: Path, export_format: ExportFormat, loaded: LoadedRun,
             bundle: DatasetBundle | None, unavailable: str) -> dict[str, Any]:
    """``check``, or ``check_skipped`` when the test images are gone; a file that does not run fails."""
    if bundle is None:
        return {"check_skipped": unavailable}
    try:
        return {"check": check_export(model_file, export_format.keras_format, loaded, bundle.test).to_dict()}
    except TLError as exc:
        return {"check_skipped": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a file that does not run must not ship
        raise _does_not_run(export_format, loaded, exc) from exc


def _does_not_run(export_format: ExportFormat, loaded: LoadedRun, exc: Exception) -> ExportError:
    return ExportError(
        f"The {export_format.label} file of run {loaded.run_id} was written but does not run "
        f"({type(exc).__name__}: {brief_reason(exc)}).",
        "The .keras download still works; another export format may too.",
    )


def _io_metadata(model_file: Path, export_format: ExportFormat, loaded: LoadedRun) -> dict[str, Any]:
    """What a program needs beyond the float32 defaults: tensor names (ONNX), quantisation (int8).

    Raises:
        ExportError: The file does not open, or an int8 file kept tensors in floating point.
    """
    if export_format.keras_format == "onnx":
        try:
            names = onnx_names(model_file)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime reports bad files with many types
            raise _does_not_run(export_format, loaded, exc) from exc
        return {"input": {"name": names.input}, "output": {"name": names.output}}
    if not export_format.calibrated:
        return {}
    try:
        io = tflite_io(model_file)
    except Exception as exc:  # noqa: BLE001 - LiteRT reports bad files with many types
        raise _does_not_run(export_format, loaded, exc) from exc
    _require_full_integer(io, loaded)
    return {
        "input": {"dtype": io.input.dtype, "quantization": _quantization(io.input),
                  "note": "resize to the shape and feed the uint8 pixels as they are (scale 1, zero "
                          "point 0); the model normalises itself"},
        "output": {"dtype": io.output.dtype, "quantization": _quantization(io.output),
                   "meaning": "class probabilities (softmax), quantised: scale * (value - zero_point)"},
    }


def _quantization(io: TensorIO) -> dict[str, Any]:
    return {"scale": io.scale, "zero_point": io.zero_point}


def _require_full_integer(io: TfliteIO, loaded: LoadedRun) -> None:
    """An "int8" file with float tensors left would be refused by the integer-only accelerators
    it is for, and the converter leaves them silently where an op has no integer kernel."""
    if not io.float_tensors and io.input.quantised and io.output.quantised:
        return
    names = sorted({_op_name(name) for name in io.float_tensors})
    raise ExportError(
        f"Run {loaded.run_id}'s model has operations the int8 converter could not quantise "
        f"({', '.join(names[:4]) or 'its input or output'}{', ...' if len(names) > 4 else ''}): "
        "they would run in float, which integer-only accelerators refuse.",
        "Export tflite_quantized (8-bit weights, float activations) or tflite_float16 instead.",
    )


def _op_name(tensor_name: str) -> str:
    """``functional_1/activation/Cumsum;...`` -> ``activation/Cumsum``: the layer and the op."""
    return "/".join(tensor_name.split(";")[0].split("/")[-2:])


def _size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder (a SavedModel)."""
    if path.is_file():
        return path.stat().st_size
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def _publish(work: Path, metadata: dict[str, Any], target: Path) -> None:
    """Zip the package and move it into place, metadata first: a reader never sees half an export."""
    atomic_write(metadata_path(target), json.dumps(metadata, indent=1))
    atomic_write(target, lambda partial: _zip_folder(work / "package", partial))


def _write_model(loaded: LoadedRun, export_format: ExportFormat, path: Path,
                 calibration: np.ndarray | None) -> None:
    """Convert under the run's lock: the model object is shared with every session's predictions."""
    image_size = loaded.image_size
    signature = [tf.TensorSpec((None, image_size, image_size, 3), tf.float32, name=INPUT_NAME)]
    settings = dict(export_format.converter_settings)
    if calibration is not None:
        settings["representative_dataset"] = _representative(calibration)
    try:
        with loaded.lock:
            loaded.model.export(str(path), format=export_format.keras_format, verbose=False,
                                input_signature=signature, **settings)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - the converters report refusals with many types
        raise ExportError(
            f"Run {loaded.run_id}'s model could not be converted to {export_format.label} "
            f"({type(exc).__name__}: {brief_reason(exc)}).",
            _refusal_hint(export_format),
        ) from exc


def _refusal_hint(export_format: ExportFormat) -> str:
    if export_format.calibrated:
        return ("Export tflite_quantized (8-bit weights, float activations) or tflite_float16, "
                "which need no integer kernels; the .keras download still works.")
    return "The .keras download still works; another export format may too."


def _metadata(loaded: LoadedRun, format_name: str, io: dict[str, Any]) -> dict[str, Any]:
    """The input and output as every format has them, with the format's own details on top."""
    size = loaded.image_size
    return {
        "run_id": loaded.run_id,
        "format": format_name,
        "input": {"shape": [1, size, size, 3], "dtype": "float32", "color": "RGB", "range": [0, 255],
                  "note": "resize to the shape; the model normalises itself", **io.get("input", {})},
        "output": {"shape": [1, len(loaded.class_names)], "meaning": "class probabilities (softmax)",
                   **io.get("output", {})},
        "labels": loaded.class_names,
    }


def _zip_folder(folder: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(folder).as_posix())
