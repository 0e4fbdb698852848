"""A small evaluation report and epochs, for tests of what is logged or shown about a run."""

from __future__ import annotations

from tlcore.records import EpochRecord
from tlcore.report.evaluate import ClassMetrics, EvalReport

EPOCHS = [EpochRecord(1, "frozen", 0.9, 0.6, 1.1, 0.5, 1e-3, 2.0, 100.0),
          EpochRecord(2, "frozen", 0.5, 0.8, 0.7, 0.75, 5e-4, 1.5, 120.0)]


def small_report() -> EvalReport:
    """Eight test images of two classes, one dog taken for a cat."""
    per_class = [ClassMetrics("cat", 0.8, 1.0, 0.89, 4), ClassMetrics("dog", 1.0, 0.75, 0.86, 4)]
    return EvalReport(accuracy=0.875, top_k=2, top_k_accuracy=1.0, per_class=per_class,
                      macro={"precision": 0.9, "recall": 0.875, "f1": 0.87}, weighted={"f1": 0.87},
                      confusion=[[4, 0], [1, 3]], class_names=["cat", "dog"])
