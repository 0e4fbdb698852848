"""Test metrics from a confusion matrix, and prediction with the training preprocessing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from numbers import Integral
from typing import Any

import keras
import numpy as np

from tlcore.data import Split
from tlcore.errors import ConfigError
from tlcore.images import load_image

ImageInput = bytes | str | os.PathLike | np.ndarray

DEFAULT_TOP_K = 3
"""Predictions per image when none is asked for (fewer for a model with fewer classes)."""


@dataclass
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Mistake:
    """A confidently wrong test prediction; ``index`` points into the test split."""

    id: str
    index: int
    true: str
    predicted: str
    confidence: float


@dataclass
class EvalReport:
    """Everything the Compare page and the CLI show about a model on the test split."""

    accuracy: float
    top_k: int
    top_k_accuracy: float
    per_class: list[ClassMetrics]
    macro: dict[str, float]
    weighted: dict[str, float]
    confusion: list[list[int]]
    class_names: list[str]
    mistakes: list[Mistake] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        data = dict(data)
        data["per_class"] = [ClassMetrics(**c) for c in data["per_class"]]
        data["mistakes"] = [Mistake(**m) for m in data.get("mistakes", [])]
        return cls(**data)


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted ones."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def class_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> list[ClassMetrics]:
    """Precision, recall and F1 per class; 0 where a ratio is undefined (nothing predicted)."""
    tp = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    support = matrix.sum(axis=1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return [
        ClassMetrics(name, float(p), float(r), float(f), int(s))
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
    ]


def _averages(per_class: list[ClassMetrics]) -> tuple[dict[str, float], dict[str, float]]:
    keys = ("precision", "recall", "f1")
    support = np.array([c.support for c in per_class], dtype=float)
    macro = {k: float(np.mean([getattr(c, k) for c in per_class])) for k in keys}
    weights = support / support.sum() if support.sum() else support
    weighted = {k: float(np.dot(weights, [getattr(c, k) for c in per_class])) for k in keys}
    return macro, weighted


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities, chunk by chunk through the compiled predict step.

    ``predict_on_batch`` skips ``predict``'s per-call set-up (data adapter, callbacks), which
    dominates the latency of classifying one uploaded image.
    """
    chunks = [
        np.asarray(model.predict_on_batch(images[i:i + batch_size].astype(np.float32)))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, model.output_shape[-1]), np.float32)


def evaluate(
    model: keras.Model,
    split: Split,
    class_names: Sequence[str],
    top_k: int = 3,
    max_mistakes: int = 12,
) -> EvalReport:
    """Evaluate on a split (normally the test split)."""
    probabilities = predict_probabilities(model, split.images)
    return report_from_probabilities(probabilities, split, class_names, top_k, max_mistakes)


def report_from_probabilities(
    probabilities: np.ndarray,
    split: Split,
    class_names: Sequence[str],
    top_k: int = 3,
    max_mistakes: int = 12,
) -> EvalReport:
    num_classes = len(class_names)
    top_k = min(top_k, num_classes)
    predicted = probabilities.argmax(axis=1)
    true = split.labels.astype(int)
    ranked = np.argsort(-probabilities, axis=1)[:, :top_k]
    matrix = confusion_matrix(true, predicted, num_classes)
    per_class = class_metrics(matrix, class_names)
    macro, weighted = _averages(per_class)
    wrong = np.flatnonzero(predicted != true)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence)][:max_mistakes]
    mistakes = [
        Mistake(split.ids[i], int(i), class_names[true[i]], class_names[predicted[i]],
                float(probabilities[i, predicted[i]]))
        for i in order
    ]
    return EvalReport(
        accuracy=float(np.mean(predicted == true)) if len(true) else 0.0,
        top_k=top_k,
        top_k_accuracy=float(np.mean((ranked == true[:, None]).any(axis=1))) if len(true) else 0.0,
        per_class=per_class,
        macro=macro,
        weighted=weighted,
        confusion=matrix.tolist(),
        class_names=list(class_names),
        mistakes=mistakes,
    )


def prepare_images(images: Sequence[ImageInput], image_size: int) -> np.ndarray:
    """Decode like the training data: EXIF upright, RGB, resized to the model's size."""
    return np.stack([load_image(image, image_size) for image in images])


def top_predictions(
    probabilities: np.ndarray, class_names: Sequence[str], top_k: int
) -> list[list[Prediction]]:
    top_k = max(1, min(top_k, len(class_names)))
    results = []
    for row in probabilities:
        order = np.argsort(-row)[:top_k]
        results.append([Prediction(class_names[i], float(row[i])) for i in order])
    return results


def check_top_k(top_k: int, num_classes: int) -> int:
    """Refuse a top-k a model cannot answer, instead of quietly answering another one.

    The CLI's ``--top-k``, the Compare page's slider and :func:`predict` all pass through here,
    so ``0``, ``-5`` or ``100000`` fail the same way everywhere.

    Raises:
        ConfigError: ``top_k`` is not a whole number from 1 to ``num_classes``.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, Integral) or not 1 <= top_k <= num_classes:
        raise ConfigError(
            f"Top-k must be a whole number from 1 to {num_classes} (the model's number of "
            f"classes); got {top_k!r}.",
            f"Ask for 1 to {num_classes} predictions per image.",
        )
    return int(top_k)


def predict(
    model: keras.Model,
    class_names: Sequence[str],
    images: Sequence[ImageInput],
    image_size: int,
    top_k: int | None = None,
) -> list[list[Prediction]]:
    """Top-k labels for each image (bytes, paths or arrays).

    Args:
        top_k: Labels per image, from 1 to the number of classes; None for up to
            :data:`DEFAULT_TOP_K`.

    Raises:
        ConfigError: ``top_k`` is outside 1 to the number of classes (:func:`check_top_k`).
    """
    top_k = min(DEFAULT_TOP_K, len(class_names)) if top_k is None else check_top_k(top_k, len(class_names))
    batch = prepare_images(images, image_size)
    return top_predictions(predict_probabilities(model, batch), class_names, top_k)
