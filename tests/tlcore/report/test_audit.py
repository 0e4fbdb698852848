"""The data audit's pure functions: copies across splits, likely label errors, the map, the record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlcore.report import audit as audit_module
from tlcore.report.audit import (
    AuditSettings,
    DataAudit,
    LeakCount,
    SplitEmbeddings,
    audit_embeddings,
    embedding_map,
    find_label_issues,
    find_leaks,
    label_folds,
    leak_sentence,
    nearest_above,
    nearest_rows,
    out_of_fold_probabilities,
    principal_basis,
    unit_rows,
)


def split(name: str, rows: np.ndarray, labels: np.ndarray | None = None,
          identities: list[str] | None = None) -> SplitEmbeddings:
    labels = np.zeros(len(rows), np.int64) if labels is None else labels
    return SplitEmbeddings(name, [f"{name}/{i}.png" for i in range(len(rows))],
                           identities or [f"{name}-{i}" for i in range(len(rows))], labels, rows)


def near_copy(row: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    """A row at exactly ``similarity`` to ``row``: its direction turned towards a random one."""
    unit = row / np.linalg.norm(row)
    other = rng.normal(size=row.shape)
    other -= (other @ unit) * unit
    other /= np.linalg.norm(other)
    return (similarity * unit + np.sqrt(1 - similarity**2) * other) * np.linalg.norm(row)


def brute_nearest(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarities = unit_rows(query) @ unit_rows(reference).T
    return similarities.argmax(axis=1), similarities.max(axis=1)


@pytest.fixture
def planted() -> tuple[list[SplitEmbeddings], set[tuple[str, int, str, int, str]]]:
    """Random directions (no two within 0.6 of each other in 256 dimensions) with copies planted:
    test 0-2 exact copies of training rows (other identities, as a copy with another mtime has),
    test 3-4 near-copies at 0.95 and 0.91, test 5 a near-copy of a validation row, validation 0 an
    exact copy of a training row, test 6 a near-copy at 0.85 (below the threshold: not a leak)
    and test 7 the same identity as training row 40 although all its features are zero."""
    rng = np.random.default_rng(3)
    train, val, test = (rng.normal(size=(n, 256)).astype(np.float32) for n in (120, 30, 30))
    test[0:3] = train[[5, 17, 99]] * np.float32(2.5)  # a copy's features may be scaled: cosine ignores it
    test[3], test[4] = near_copy(train[20], 0.95, rng), near_copy(train[21], 0.91, rng)
    test[5] = near_copy(val[7], 0.93, rng)
    val[0] = train[60]
    test[6] = near_copy(train[30], 0.85, rng)
    test[7] = 0
    test_ids = [f"test-{i}" for i in range(30)]
    test_ids[7] = "train-40"
    splits = [split("train", train), split("val", val), split("test", test, identities=test_ids)]
    expected = {("test", 0, "train", 5, "exact"), ("test", 1, "train", 17, "exact"),
                ("test", 2, "train", 99, "exact"), ("test", 3, "train", 20, "near"),
                ("test", 4, "train", 21, "near"), ("test", 5, "val", 7, "near"),
                ("test", 7, "train", 40, "exact"), ("val", 0, "train", 60, "exact")}
    return splits, expected


def test_planted_copies_across_splits_are_found_and_nothing_else(planted) -> None:
    splits, expected = planted
    leaks = find_leaks(splits)
    assert {(p.split, p.index, p.other_split, p.other_index, p.kind) for p in leaks} == expected
    by_place = {(p.split, p.index, p.other_split): p for p in leaks}
    assert by_place["test", 3, "train"].similarity == pytest.approx(0.95, abs=1e-4)
    assert by_place["test", 0, "train"].similarity == pytest.approx(1.0, abs=1e-6)
    assert by_place["test", 0, "train"].other_id == "train/5.png"
    assert by_place["test", 7, "train"].similarity == 0.0, "zero features: only the identity says so"
    order = [(p.split, p.other_split) for p in leaks]
    assert order == sorted(order, key=audit_module.SEARCH_ORDER.index), "test in training first"


def test_a_lower_threshold_finds_the_weaker_near_copy_too(planted) -> None:
    splits, expected = planted
    leaks = find_leaks(splits, AuditSettings(near=0.8))
    assert {(p.split, p.index, p.other_split, p.other_index) for p in leaks} == (
        {place[:4] for place in expected} | {("test", 6, "train", 30)})


def test_the_blockwise_search_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    query, reference = rng.normal(size=(37, 24)), rng.normal(size=(53, 24))
    where, best = nearest_rows(query, reference, block=8)
    expected_where, expected_best = brute_nearest(query, reference)
    assert np.array_equal(where, expected_where)
    assert np.allclose(best, expected_best, atol=1e-6)
    empty_where, empty_best = nearest_rows(query, reference[:0])
    assert (empty_where == -1).all() and np.isneginf(empty_best).all()


@pytest.mark.parametrize("width", [3, 12, 40])
def test_the_screened_search_equals_brute_force_above_the_threshold(width: int) -> None:
    """Low-rank rows with near-copies: the bound screens most pairs out, never a true match."""
    rng = np.random.default_rng(width)
    mixing = rng.normal(size=(6, 40))
    reference = np.maximum(rng.normal(size=(300, 6)) @ mixing + rng.normal(scale=0.3, size=(300, 40)), 0)
    query = np.maximum(rng.normal(size=(90, 6)) @ mixing + rng.normal(scale=0.3, size=(90, 40)), 0)
    query[:30] = [near_copy(reference[3 * i], 0.881 + 0.004 * i, rng) for i in range(30)]
    basis = principal_basis([split("r", reference)], width, 200, seed=0)
    for threshold in (0.9, 0.97):
        where, best = nearest_above(query, reference, threshold, basis, block=16)
        expected_where, expected_best = brute_nearest(query, reference)
        above = expected_best >= threshold
        assert above.sum() >= 5
        assert np.array_equal(where[above], expected_where[above])
        assert np.allclose(best[above], expected_best[above], atol=1e-5)
        assert not (best[~above] >= threshold).any()


def test_alike_features_fall_back_to_the_full_comparison() -> None:
    """Rows that all point the same way pass any bound: blocks are compared in full, still exact."""
    rng = np.random.default_rng(1)
    reference = 5 + rng.normal(scale=0.05, size=(200, 30))
    query = 5 + rng.normal(scale=0.05, size=(40, 30))
    basis = principal_basis([split("r", reference)], 2, 100, seed=0)
    where, best = nearest_above(query, reference, 0.9, basis, block=32)
    expected_where, expected_best = brute_nearest(query, reference)
    assert np.array_equal(where, expected_where) and np.allclose(best, expected_best, atol=1e-6)


def separated(per_class: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated classes in 256 dimensions whose images are not alike: two images of a class
    have cosine similarity about 0.7 (at most 0.81 among 400), of two classes about 0."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 256)) * 1.5
    labels = np.repeat(np.arange(classes), per_class)
    return (centres[labels] + rng.normal(size=(len(labels), 256))).astype(np.float32), labels


def issues_of(rows: np.ndarray, labels: np.ndarray, classes: int) -> set[int]:
    train = split("train", rows, labels)
    probabilities = out_of_fold_probabilities(rows, labels, classes, label_folds(labels, 5))
    return {issue.index for issue in find_label_issues(train, probabilities)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flipped_labels_are_mostly_found_and_a_clean_set_yields_few(seed: int) -> None:
    """Measured over seeds 0-19: 18 to 20 of 20 flipped labels among 400 found (99.5 % on
    average), no other image flagged, none on the clean set; the test asks for 16 and 2."""
    rows, labels = separated(100, 4, seed)
    rng = np.random.default_rng(100 + seed)
    flipped = rng.choice(len(labels), 20, replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, 4, 20)) % 4
    found = issues_of(rows, noisy, 4)
    assert len(found & set(flipped.tolist())) >= 16
    assert len(found - set(flipped.tolist())) <= 2
    assert len(issues_of(rows, labels, 4)) <= 2


def test_a_candidate_says_its_given_and_suspected_label() -> None:
    rows, labels = separated(30, 3, seed=5)
    noisy = labels.copy()
    noisy[4] = 2  # a class-0 image labelled 2
    train = split("train", rows, noisy)
    issues = find_label_issues(train, out_of_fold_probabilities(rows, noisy, 3, 5))
    [issue] = [issue for issue in issues if issue.index == 4]
    assert (issue.id, issue.given, issue.suspected) == ("train/4.png", 2, 0)
    assert issue.confidence > 0.5 > issue.given_probability


def test_label_folds_need_two_images_of_every_class() -> None:
    assert label_folds(np.array([0, 0, 1, 1, 1]), 5) == 2
    assert label_folds(np.array([0] * 9 + [1] * 7), 5) == 5
    assert label_folds(np.array([0, 0, 1]), 5) == 0
    assert label_folds(np.array([0, 0, 0]), 5) == 0, "one class: nothing to confuse it with"


def test_the_map_samples_the_test_split_and_marks_mistakes() -> None:
    rows, labels = separated(40, 3, seed=2)
    predicted = labels.copy()
    predicted[[3, 50]] = (labels[[3, 50]] + 1) % 3
    test = split("test", rows, labels)
    points, method = embedding_map(test, predicted, AuditSettings(map_points=60))
    assert len(points) == 60 and method.startswith("t-SNE") and "60 of 120 test images" in method
    ids = {f"test/{i}.png": i for i in range(120)}
    for point in points:
        i = ids[point.id]
        assert (point.label, point.predicted, point.mistake) == (labels[i], predicted[i], i in (3, 50))
    centres = [np.mean([(p.x, p.y) for p in points if p.label == k], axis=0) for k in range(3)]
    spread = np.mean([np.hypot(p.x - centres[p.label][0], p.y - centres[p.label][1]) for p in points])
    assert min(np.hypot(*(a - b)) for a in centres for b in centres if a is not b) > 2 * spread


def test_tiny_test_splits_still_get_a_map() -> None:
    rows, labels = separated(2, 3, seed=0)
    for count in (0, 1, 2, 6):
        points, method = embedding_map(split("test", rows[:count], labels[:count]), labels[:count])
        assert len(points) == count
        assert method == ("no test images" if not count else f"{'PCA' if count > 2 else 'no projection'} of "
                          f"all {count} test images")


@pytest.fixture
def leaky() -> tuple[list[SplitEmbeddings], list[int]]:
    """Two classes split 80/20/20, with test 0 a copy of training image 3, test 1 a near-copy of
    training image 8, validation 0 a copy of training image 10, and training labels 5, 6, 7 flipped."""
    rows, labels = separated(60, 2, seed=4)
    order = np.random.default_rng(4).permutation(120)
    rows, labels = rows[order], labels[order]
    rng = np.random.default_rng(5)
    rows[100], rows[101], rows[80] = rows[3], near_copy(rows[8], 0.95, rng), rows[10]
    labels[[100, 101, 80]] = labels[[3, 8, 10]]
    noisy = labels.copy()
    noisy[[5, 6, 7]] = 1 - labels[[5, 6, 7]]
    splits = [split("train", rows[:80], noisy[:80]), split("val", rows[80:100], labels[80:100]),
              split("test", rows[100:], labels[100:])]
    return splits, [5, 6, 7]


def test_the_audit_counts_everything_lists_a_few_and_survives_json(leaky) -> None:
    splits, flipped = leaky
    predicted = splits[2].labels.copy()
    predicted[4] = 1 - predicted[4]
    audit = audit_embeddings(splits, ["cat", "dog"], predicted, AuditSettings(listed=2))
    counts = {(c.split, c.other_split): (c.exact, c.near) for c in audit.leak_counts}
    assert counts == {("test", "train"): (1, 1), ("test", "val"): (0, 0), ("val", "train"): (1, 0)}
    assert [(p.split, p.index, p.other_index, p.kind) for p in audit.leaks] == [
        ("test", 0, 3, "exact"), ("test", 1, 8, "near")], "test in training first, two listed"
    assert audit.sizes == {"train": 80, "val": 20, "test": 20}
    assert audit.label_folds == 5 and audit.label_issue_count == 3
    assert sorted(issue.index for issue in audit.label_issues) in ([5, 6], [5, 7], [6, 7])
    assert [p.id for p in audit.map_points if p.mistake] == ["test/4.png"]
    again = DataAudit.from_dict(json.loads(json.dumps(audit.to_dict(), allow_nan=False)))
    assert again == audit


def test_warnings_are_sentences_a_stakeholder_reads(leaky) -> None:
    splits, _ = leaky
    audit = audit_embeddings(splits, ["cat", "dog"], splits[2].labels)
    assert audit.warnings() == [
        "2 test images have a near-copy in training (1 exact): the test score is optimistic.",
        "1 validation image has an exact copy in training: validation accuracy is optimistic, and it "
        "steered early stopping.",
        "3 training images look mislabelled (see the audit).",
    ]
    assert "0.9999" in audit.criteria() and "near-copy: at least 0.9." in audit.criteria()


def test_leak_sentences_fit_their_counts() -> None:
    assert leak_sentence(LeakCount("test", "train", 1, 0)) == (
        "1 test image has an exact copy in training: the test score is optimistic.")
    assert leak_sentence(LeakCount("test", "val", 0, 12)).startswith("12 test images have a near-copy in "
                                                                      "validation: the test score may be")
    assert leak_sentence(LeakCount("val", "train", 2, 1)).startswith(
        "3 validation images have a near-copy in training (2 exact): validation accuracy is optimistic")


def test_a_clean_audit_has_no_warnings() -> None:
    rows, labels = separated(25, 2, seed=9)
    splits = [split("train", rows[:30], labels[:30]), split("val", rows[30:40], labels[30:40]),
              split("test", rows[40:], labels[40:])]
    audit = audit_embeddings(splits, ["a", "b"], labels[40:])
    assert audit.warnings() == [] and all(c.total == 0 for c in audit.leak_counts)
    assert not any(point.mistake for point in audit.map_points)


def test_label_issues_come_worst_first_by_how_confidently_another_class_is_predicted() -> None:
    # Twenty clean images per class, then three doubtful "a"s: img60 the head calls "b" outright
    # (0.96), img61 it finds unlike any class (0.49 b, 0.49 c), img62 it calls "c" (0.95). Two
    # are confidently another class, so two are flagged, the two least likely "a"s: img61
    # (0.02) and img60 (0.03). By self-confidence img61 would lead; by how strongly another
    # class wins over "a", img60 does.
    clean = np.repeat(np.eye(3) * 0.85 + 0.05, 20, axis=0)
    doubtful = np.array([[0.03, 0.96, 0.01], [0.02, 0.49, 0.49], [0.04, 0.01, 0.95]])
    probabilities = np.vstack([clean, doubtful])
    labels = np.array([*np.repeat(np.arange(3), 20), 0, 0, 0])
    ids = [f"img{i}" for i in range(len(labels))]
    train = SplitEmbeddings("train", ids, ids, labels, np.zeros((len(labels), 2), np.float32))
    issues = find_label_issues(train, probabilities)
    assert [issue.id for issue in issues] == ["img60", "img61"]
    assert issues[0].suspected == 1 and issues[0].confidence == 0.96
