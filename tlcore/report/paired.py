"""Is the difference between two runs real? A paired comparison on one test split.

Two runs evaluated on the same test images can be compared image by image, which is far more
sensitive than comparing two accuracies: what matters is how many images one run gets right
that the other gets wrong. McNemar's exact test asks whether that split of disagreements could
be a coin toss; a bootstrap over the test images gives each accuracy an interval. Runs whose
test splits differ (other data, another seed or split) are not paired, and say why.

Per-image predictions (:class:`TestPredictions`) are stored with every run by the runner, as
``predictions.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tlcore.errors import ConfigError
from tlcore.report.evaluate import class_metrics, confusion_matrix

BOOTSTRAP_RESAMPLES = 2000
ALPHA = 0.05
"""A difference is called clear below this p-value (and the intervals are 95 %)."""


@dataclass(frozen=True)
class TestPredictions:
    """One run's answer for every test image.

    Attributes:
        identities: Content identity of each test image (pairs images across runs).
        ids: The image's name (a relative path, ``test/12``), for people.
        true: True label index of each image.
        predicted: Predicted label index.
        probability: Probability of the predicted class.
        top_k: Label indices of the k most likely classes, most likely first.
        class_names: Label index -> class name.
    """

    identities: list[str]
    ids: list[str]
    true: list[int]
    predicted: list[int]
    probability: list[float]
    top_k: list[list[int]]
    class_names: list[str]

    @classmethod
    def from_probabilities(
        cls, probabilities: np.ndarray, identities: list[str], ids: list[str], true: np.ndarray,
        class_names: list[str], top_k: int,
    ) -> TestPredictions:
        predicted = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, int)
        ranked = np.argsort(-probabilities, axis=1)[:, :top_k]
        return cls(list(identities), list(ids), [int(t) for t in true], predicted.astype(int).tolist(),
                   [float(probabilities[i, p]) for i, p in enumerate(predicted)], ranked.tolist(),
                   list(class_names))

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TestPredictions:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class ClassDelta:
    """One class's precision, recall and F1 for run A and run B, and how B moved each (B - A).

    All three deltas are kept: a fine-tuned run can gain recall on a class while losing precision
    on it, which an unchanged F1 hides.
    """

    name: str
    precision: tuple[float, float]
    recall: tuple[float, float]
    f1: tuple[float, float]

    @property
    def precision_delta(self) -> float:
        return self.precision[1] - self.precision[0]

    @property
    def recall_delta(self) -> float:
        return self.recall[1] - self.recall[0]

    @property
    def f1_delta(self) -> float:
        return self.f1[1] - self.f1[0]

    def deltas(self) -> dict[str, float]:
        """The three deltas by name, as the JSON of ``compare --paired`` carries them."""
        return {"precision_delta": self.precision_delta, "recall_delta": self.recall_delta,
                "f1_delta": self.f1_delta}


@dataclass(frozen=True)
class Disagreement:
    """A test image the two runs answer differently."""

    id: str
    true: str
    answer_a: str
    answer_b: str


@dataclass(frozen=True)
class PairedComparison:
    """Run A against run B on the same test images.

    Attributes:
        images: Test images both runs were evaluated on.
        accuracy: Each run's accuracy with its bootstrap 95 % interval.
        only_a_correct: Images A gets right and B wrong (B "broke" them).
        only_b_correct: Images B gets right and A wrong (B "fixed" them).
        mcnemar_p: McNemar's exact two-sided p-value on those two counts.
        per_class: Precision, recall and F1 of A and B per class.
        disagreements: The images the two runs answer differently.
    """

    labels: tuple[str, str]
    images: int
    accuracy: tuple[Interval, Interval]
    only_a_correct: int
    only_b_correct: int
    mcnemar_p: float
    per_class: list[ClassDelta]
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def clear(self) -> bool:
        return self.mcnemar_p < ALPHA

    def sentence(self) -> str:
        """What a stakeholder reads: "fine-tuning fixed 9 test images and broke 3: p = 0.15, ..."."""
        a, b = self.labels
        verdict = (f"a clear difference on {self.images:,} images" if self.clear
                   else f"not a clear difference on {self.images:,} images")
        better = ""
        if self.clear:
            better = f" ({b if self.only_b_correct > self.only_a_correct else a} is better)"
        return (f"{b} fixed {self.only_b_correct} test image(s) that {a} got wrong and broke "
                f"{self.only_a_correct}: p = {self.mcnemar_p:.2g}, {verdict}{better}.")


class NotPairedError(ConfigError):
    """The two runs were not tested on the same images, so they cannot be paired."""


def compare_paired(
    a: TestPredictions, b: TestPredictions, labels: tuple[str, str] = ("A", "B"), seed: int = 0
) -> PairedComparison:
    """Pair two runs' test predictions image by image.

    Raises:
        NotPairedError: The runs' test splits or classes differ.
    """
    check_pairable(a, b)
    true, pred_a = np.asarray(a.true, dtype=int), np.asarray(a.predicted, dtype=int)
    b_answer = dict(zip(b.identities, b.predicted, strict=True))
    pred_b = np.array([b_answer[identity] for identity in a.identities], dtype=int)  # in A's order
    right_a, right_b = pred_a == true, pred_b == true
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    names = a.class_names
    metrics_a = class_metrics(confusion_matrix(true, pred_a, len(names)), names)
    metrics_b = class_metrics(confusion_matrix(true, pred_b, len(names)), names)
    return PairedComparison(
        labels=labels,
        images=len(true),
        accuracy=(bootstrap_accuracy(right_a, seed), bootstrap_accuracy(right_b, seed + 1)),
        only_a_correct=only_a,
        only_b_correct=only_b,
        mcnemar_p=mcnemar_exact(only_a, only_b),
        per_class=[ClassDelta(x.name, (x.precision, y.precision), (x.recall, y.recall), (x.f1, y.f1))
                   for x, y in zip(metrics_a, metrics_b, strict=True)],
        disagreements=[Disagreement(a.ids[i], names[true[i]], names[pred_a[i]], names[pred_b[i]])
                       for i in np.flatnonzero(pred_a != pred_b)],
    )


def check_pairable(a: TestPredictions, b: TestPredictions) -> None:
    """Refuse runs that were not tested on the same images with the same classes."""
    if a.class_names != b.class_names:
        raise NotPairedError("The two runs have different classes, so their answers cannot be paired.",
                             "Compare runs trained on the same dataset.")
    if (sorted(a.identities) != sorted(b.identities) or len(set(a.identities)) != len(a.identities)
            or dict(zip(a.identities, a.true, strict=True)) != dict(zip(b.identities, b.true, strict=True))):
        shared = len(set(a.identities) & set(b.identities))
        raise NotPairedError(
            f"The two runs were tested on different images ({len(a.identities):,} and "
            f"{len(b.identities):,}, {shared:,} in common), so they cannot be paired image by image.",
            "Pair runs on the same data with the same seed and split fractions; the accuracies "
            "above can still be compared, less precisely.",
        )


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: how likely a split this uneven is if both runs are equal."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_accuracy(right: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> Interval:
    """Accuracy with a percentile bootstrap 95 % interval over the test images."""
    right = np.asarray(right, dtype=bool)
    if not len(right):
        return Interval(0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(right), size=(resamples, len(right)))
    accuracies = right[draws].mean(axis=1)
    low, high = np.quantile(accuracies, [ALPHA / 2, 1 - ALPHA / 2])
    return Interval(float(right.mean()), float(low), float(high))
