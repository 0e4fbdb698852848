"""Export a finished run's model for deployment outside the studio.

A ``.keras`` file needs Python, Keras and tlcore's registered layers. Phones, edge devices and
model servers want LiteRT (TFLite) or a SavedModel instead, with the class names beside the
model. Each export is one zip under the run's folder, written atomically, built once and
reused until the run's model changes; deleting the run deletes its exports.

Every model takes float32 RGB pixels in [0, 255] at the run's image size: the backbone's
preprocessing is a layer inside the model, so a deployment only decodes and resizes.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tlcore.config import DatasetSpec
from tlcore.data.labels import visible_label
from tlcore.deploy.export_check import check_export
from tlcore.deploy.serving import LoadedRun, load_run
from tlcore.errors import ConfigError, ExportError, StorageError, TLError
from tlcore.files import atomic_write
from tlcore.runs.store import RunStore


@dataclass(frozen=True)
class ExportFormat:
    """One way to package a model: what people pick it for, and how Keras writes it."""

    label: str
    purpose: str
    keras_format: str
    converter_settings: tuple[tuple[str, Any], ...] = ()

    @property
    def model_name(self) -> str:
        return "model.tflite" if self.keras_format == "litert" else "saved_model"


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "tflite": ExportFormat(
        "LiteRT / TFLite (float32)",
        "Android, iOS, Raspberry Pi and other edge devices; the same predictions as the studio.",
        "litert",
    ),
    "tflite_quantized": ExportFormat(
        "LiteRT / TFLite, 8-bit weights",
        "About 3x smaller and faster on phones; probabilities can move by a few points.",
        "litert",
        (("optimizations", (tf.lite.Optimize.DEFAULT,)),),
    ),
    "saved_model": ExportFormat(
        "TensorFlow SavedModel",
        "TensorFlow Serving, or tf.saved_model.load in any TensorFlow program.",
        "tf_saved_model",
    ),
}


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


def export_run(run_id: str, format_name: str, store: RunStore | None = None) -> Path:
    """The run's model as a deployable zip: the model, ``labels.txt`` and ``metadata.json``.

    The metadata holds how the exported file did on the run's test images next to the studio's
    model (``check``, see :func:`tlcore.deploy.export_check.check_export`), or why it could not be
    checked (``check_skipped``); :func:`export_metadata` reads it without opening the zip.

    Raises:
        ConfigError: ``format_name`` is not one of :data:`EXPORT_FORMATS`.
        RunNotFoundError, RunStateError, ArtifactError: As :func:`tlcore.deploy.serving.load_run`.
        ExportError: The converter refused the model, or the file it wrote does not run
            (nothing is left behind).
        StorageError: The zip could not be written (disk full).
    """
    export_format = EXPORT_FORMATS.get(format_name)
    if export_format is None:
        raise ConfigError(
            f"Unknown export format {format_name!r}.",
            f"Choose one of: {', '.join(EXPORT_FORMATS)}.",
        )
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
    model_file = package / export_format.model_name
    _write_model(loaded, export_format, model_file)
    metadata = {**_metadata(loaded, format_name), **_checked(model_file, export_format, loaded, dataset)}
    # labels.txt is escaped, one line per output; metadata.json keeps the true names (JSON-escaped).
    (package / "labels.txt").write_text(labels_text(loaded.class_names), encoding="utf-8")
    (package / "metadata.json").write_text(json.dumps(metadata, indent=1), encoding="utf-8")
    return metadata


def _checked(model_file: Path, export_format: ExportFormat, loaded: LoadedRun,
             dataset: DatasetSpec) -> dict[str, Any]:
    """``check``, or ``check_skipped`` when the test images are gone; a file that does not run fails."""
    try:
        return {"check": check_export(model_file, export_format.keras_format, loaded, dataset).to_dict()}
    except TLError as exc:
        return {"check_skipped": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a file that does not run must not ship
        raise ExportError(
            f"The {export_format.label} file of run {loaded.run_id} was written but does not run "
            f"({type(exc).__name__}: {_first_line(exc)}).",
            "The .keras download still works; another export format may too.",
        ) from exc


def _publish(work: Path, metadata: dict[str, Any], target: Path) -> None:
    """Zip the package and move it into place, metadata first: a reader never sees half an export."""
    atomic_write(metadata_path(target), json.dumps(metadata, indent=1))
    atomic_write(target, lambda partial: _zip_folder(work / "package", partial))


def _write_model(loaded: LoadedRun, export_format: ExportFormat, path: Path) -> None:
    """Convert under the run's lock: the model object is shared with every session's predictions."""
    image_size = loaded.image_size
    signature = [keras.InputSpec(shape=(None, image_size, image_size, 3), dtype="float32")]
    try:
        with loaded.lock:
            loaded.model.export(str(path), format=export_format.keras_format, verbose=False,
                                input_signature=signature, **dict(export_format.converter_settings))
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - the converters report refusals with many types
        raise ExportError(
            f"Run {loaded.run_id}'s model could not be converted to {export_format.label} "
            f"({type(exc).__name__}: {_first_line(exc)}).",
            "The .keras download still works; another export format may too.",
        ) from exc


def _first_line(exc: BaseException) -> str:
    """Converters print whole logs into their errors; the first line says what went wrong."""
    return (str(exc).splitlines() or [""])[0][:200]


def _metadata(loaded: LoadedRun, format_name: str) -> dict[str, Any]:
    size = loaded.image_size
    return {
        "run_id": loaded.run_id,
        "format": format_name,
        "input": {"shape": [1, size, size, 3], "dtype": "float32", "color": "RGB",
                  "range": [0, 255], "note": "resize to the shape; the model normalises itself"},
        "output": {"shape": [1, len(loaded.class_names)], "meaning": "class probabilities (softmax)"},
        "labels": loaded.class_names,
    }


def _zip_folder(folder: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(folder).as_posix())
