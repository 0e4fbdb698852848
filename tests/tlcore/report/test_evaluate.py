import numpy as np
import pytest

from tlcore.data import Split
from tlcore.report.evaluate import (
    EvalReport,
    class_metrics,
    confusion_matrix,
    report_from_probabilities,
    top_predictions,
)


def test_confusion_and_metrics_by_hand():
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    matrix = confusion_matrix(true, pred, 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    metrics = class_metrics(matrix, ["a", "b", "c"])
    assert metrics[0].precision == pytest.approx(1.0)
    assert metrics[0].recall == pytest.approx(2 / 3)
    assert metrics[0].f1 == pytest.approx(0.8)
    assert metrics[1].precision == pytest.approx(0.5)
    assert metrics[2].support == 1


def test_class_never_predicted_has_zero_precision_not_nan():
    metrics = class_metrics(confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2), ["a", "b"])
    assert metrics[1].precision == 0.0 and metrics[1].f1 == 0.0


def test_report_mistakes_sorted_by_confidence_and_topk():
    probs = np.array([
        [0.9, 0.05, 0.05],  # right
        [0.2, 0.7, 0.1],    # wrong, 0.7
        [0.1, 0.1, 0.8],    # wrong, 0.8
        [0.4, 0.35, 0.25],  # right
    ])
    split = Split(images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.array([0, 0, 1, 0]),
                  ids=["i0", "i1", "i2", "i3"])
    report = report_from_probabilities(probs, split, ["a", "b", "c"], top_k=2)
    assert report.accuracy == pytest.approx(0.5)
    assert report.top_k_accuracy == pytest.approx(0.75)
    assert [m.id for m in report.mistakes] == ["i2", "i1"]
    assert report.mistakes[0].true == "b" and report.mistakes[0].predicted == "c"
    assert EvalReport.from_dict(report.to_dict()) == report


def test_top_predictions_are_ordered_and_capped():
    result = top_predictions(np.array([[0.1, 0.6, 0.3]]), ["a", "b", "c"], top_k=5)
    assert [p.label for p in result[0]] == ["b", "c", "a"]
