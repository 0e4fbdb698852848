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
