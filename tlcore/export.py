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
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tlcore.errors import ConfigError, ExportError, StorageError
from tlcore.serving import LoadedRun, load_run
from tlcore.store import RunStore

EXPORTS_FOLDER = "exports"


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
        "About 4x smaller and faster on phones; probabilities can move by a few points.",
        "litert",
        (("optimizations", (tf.lite.Optimize.DEFAULT,)),),
    ),
    "saved_model": ExportFormat(
        "TensorFlow SavedModel",
        "TensorFlow Serving, or tf.saved_model.load in any TensorFlow program.",
        "tf_saved_model",
    ),
}


def export_path(run_id: str, format_name: str, store: RunStore) -> Path:
    return store.artifact_dir(run_id) / EXPORTS_FOLDER / f"{run_id}-{format_name}.zip"


def ready_export(run_id: str, format_name: str, store: RunStore) -> Path | None:
    """The export built from the run's current model, if there is one (a resumed run's is stale)."""
    target, model = export_path(run_id, format_name, store), store.model_path(run_id)
    if target.exists() and model.exists() and target.stat().st_mtime >= model.stat().st_mtime:
        return target
    return None


def export_run(run_id: str, format_name: str, store: RunStore | None = None) -> Path:
    """The run's model as a deployable zip: the model, ``labels.txt`` and ``metadata.json``.

    Raises:
        ConfigError: ``format_name`` is not one of :data:`EXPORT_FORMATS`.
        RunNotFoundError, RunStateError, ArtifactError: As :func:`tlcore.serving.load_run`.
        ExportError: The converter refused the model (nothing is left behind).
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
    target = export_path(run_id, format_name, store)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            package = Path(work) / "package"
            package.mkdir()
            _write_model(loaded, export_format, package / export_format.model_name)
            (package / "labels.txt").write_text("\n".join(loaded.class_names) + "\n")
            (package / "metadata.json").write_text(json.dumps(_metadata(loaded, format_name), indent=1))
            partial = Path(work) / "export.zip"
            _zip_folder(package, partial)
            os.replace(partial, target)
    except OSError as exc:
        raise StorageError(
            f"The export of run {run_id} could not be written ({exc.strerror or exc}).",
            "Free some disk space and try again.",
        ) from exc
    return target


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
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}).",
            "The .keras download still works; another export format may too.",
        ) from exc


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
