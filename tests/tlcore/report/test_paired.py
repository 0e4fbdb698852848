"""Paired comparison of two runs: McNemar's exact test, bootstrap intervals, and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlcore.report.paired import (
    NotPairedError,
    TestPredictions,
    bootstrap_accuracy,
    compare_paired,
    mcnemar_exact,
)
from tlcore.runs.pairing import paired_payload

NAMES = ["cat", "dog"]


def answers(true: list[int], predicted: list[int], order: list[int] | None = None) -> TestPredictions:
    order = order or list(range(len(true)))
    return TestPredictions(
        identities=[f"img{i}" for i in order], ids=[f"x/{i}.png" for i in order],
        true=[true[i] for i in order], predicted=[predicted[i] for i in order],
        probability=[0.9] * len(order), top_k=[[predicted[i]] for i in order], class_names=NAMES)


def test_mcnemar_exact_matches_the_binomial_tail() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 9) == pytest.approx(2 * sum(math.comb(12, k) for k in range(4)) / 2**12)
    assert mcnemar_exact(3, 9) == pytest.approx(0.146, abs=1e-3)  # not a clear difference
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 2**10)  # ten fixed, none broken: clear
    assert mcnemar_exact(5, 5) == 1.0


def test_the_bootstrap_interval_holds_the_accuracy_and_narrows_with_more_images() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.random(100) < 0.8, rng.random(4000) < 0.8
    a, b = bootstrap_accuracy(small, seed=1), bootstrap_accuracy(large, seed=1)
    assert a.low <= a.value <= a.high and b.low <= b.value <= b.high
    assert (b.high - b.low) < (a.high - a.low) / 4
    assert 0.75 < b.low < 0.8 < b.high < 0.85


def test_fixed_and_broken_images_are_counted_per_image_in_either_order() -> None:
    true = [0] * 75 + [1] * 75
    first = true.copy()
    for i in range(12):  # A wrong on 12 images
        first[i] = 1 - true[i]
    second = true.copy()
    for i in range(12, 15):  # B fixes A's 9 of them (keeps 3 wrong) and breaks 3 others
        second[i] = 1 - true[i]
    for i in range(9, 12):
        second[i] = 1 - true[i]
    shuffled = list(np.random.default_rng(2).permutation(150))
    result = compare_paired(answers(true, first), answers(true, second, shuffled), ("frozen", "fine-tuned"))
    assert (result.only_b_correct, result.only_a_correct) == (9, 3)
    assert result.mcnemar_p == pytest.approx(mcnemar_exact(3, 9))
    assert result.sentence() == ("fine-tuned fixed 9 test image(s) that frozen got wrong and broke 3: "
                                 "p = 0.15, not a clear difference on 150 images.")
    assert len(result.disagreements) == 12
    assert result.accuracy[0].value == pytest.approx(138 / 150)
    assert result.accuracy[1].value == pytest.approx(144 / 150)
    assert {d.answer_a for d in result.disagreements} == {"cat", "dog"}
    assert [c.name for c in result.per_class] == NAMES


def test_a_clear_difference_says_which_run_is_better() -> None:
    true = [0, 1] * 50
    worse = [1 - t if i < 30 else t for i, t in enumerate(true)]
    result = compare_paired(answers(true, worse), answers(true, true), ("scratch", "frozen"))
    assert result.clear and result.only_b_correct == 30 and "(frozen is better)" in result.sentence()


def test_runs_tested_on_other_images_or_labels_are_not_paired() -> None:
    true = [0, 1, 0, 1]
    a = answers(true, true)
    other = TestPredictions(["img0", "img1", "img2", "imgX"], ["a"] * 4, true, true, [0.9] * 4,
                            [[0]] * 4, NAMES)
    with pytest.raises(NotPairedError, match="tested on different images"):
        compare_paired(a, other)
    relabelled = answers([1, 1, 0, 1], true)
    with pytest.raises(NotPairedError, match="tested on different images"):
        compare_paired(a, relabelled)
    with pytest.raises(NotPairedError, match="different classes"):
        compare_paired(a, TestPredictions(a.identities, a.ids, a.true, a.predicted, a.probability, a.top_k,
                                          ["cat", "fox"]))


def test_per_class_precision_recall_and_f1_deltas_match_a_hand_count() -> None:
    # true  cat cat cat dog dog fox
    # A     cat cat dog dog dog fox   cat P 2/2 R 2/3 | dog P 2/3 R 2/2 | fox P 1/1 R 1/1
    # B     cat dog dog dog fox fox   cat P 1/1 R 1/3 | dog P 1/3 R 1/2 | fox P 1/2 R 1/1
    names = ["cat", "dog", "fox"]
    true, first, second = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 2]

    def run(predicted: list[int]) -> TestPredictions:
        return TestPredictions([f"img{i}" for i in range(6)], [f"x/{i}.png" for i in range(6)], true,
                               predicted, [0.9] * 6, [[p] for p in predicted], names)

    result = compare_paired(run(first), run(second))
    expected = {  # class: (precision A, B), (recall A, B), (F1 A, B)
        "cat": ((1, 1), (2 / 3, 1 / 3), (0.8, 0.5)),
        "dog": ((2 / 3, 1 / 3), (1, 1 / 2), (0.8, 0.4)),
        "fox": ((1, 1 / 2), (1, 1), (1, 2 / 3)),
    }
    assert [c.name for c in result.per_class] == names
    payload = {row["name"]: row for row in paired_payload(result)["per_class"]}
    for delta in result.per_class:
        precision, recall, f1 = expected[delta.name]
        assert delta.precision == pytest.approx(precision) and delta.recall == pytest.approx(recall)
        assert delta.f1 == pytest.approx(f1)
        changes = (precision[1] - precision[0], recall[1] - recall[0], f1[1] - f1[0])
        assert (delta.precision_delta, delta.recall_delta, delta.f1_delta) == pytest.approx(changes)
        row = payload[delta.name]  # the JSON of `compare A B --paired --json`
        assert (row["precision_delta"], row["recall_delta"], row["f1_delta"]) == pytest.approx(changes)
        assert row["precision"] == pytest.approx(list(precision))
        assert row["recall"] == pytest.approx(list(recall))


def test_stored_predictions_keep_the_top_k_in_order_and_the_predicted_probability() -> None:
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.25, 0.35, 0.4]])
    stored = TestPredictions.from_probabilities(probabilities, ["i0", "i1", "i2"], ["a", "b", "c"],
                                                np.array([1, 2, 2]), ["cat", "dog", "fox"], top_k=2)
    assert stored.predicted == [1, 0, 2]
    assert stored.probability == pytest.approx([0.7, 0.5, 0.4])
    assert stored.top_k == [[1, 2], [0, 2], [2, 1]]
    assert stored.true == [1, 2, 2] and TestPredictions.from_dict(stored.to_dict()) == stored
