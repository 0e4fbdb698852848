"""Can we trust the test score? Leaks between splits, likely label errors and an embedding map.

All three checks work on what a frozen run already has on disk: the frozen backbone's pooled
features, one row per image. Two images whose rows point the same way (cosine similarity near
1) look alike to the backbone, so a test image with such a twin in training is no longer
unseen, and the test score flatters the model. A training image whose label a linear head,
trained without it, finds very unlikely is probably mislabelled (confident learning).

Pure functions on arrays: rows may be a NumPy array or anything that reads ``rows[a:b]`` and
``rows[indices]`` on demand (:class:`tlcore.data.rows.RowArray`), and they are read a block at a
time, so 100,000 rows of 1280 floats never need an N x N matrix, nor all rows at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

EXACT_SIMILARITY = 0.9999
"""Cosine similarity from which two images count as the same picture (see docs/audit.md)."""

NEAR_SIMILARITY = 0.90
"""Cosine similarity from which an image counts as a near-copy (calibrated in docs/audit.md)."""

BLOCK_ROWS = 2048
"""Rows compared at once: a block of similarities is 2048 x 2048 floats (16 MB)."""

LABEL_FILTER = "low_self_confidence"
"""How cleanlab picks label issues (see :func:`find_label_issues`)."""

SEARCH_ORDER = (("test", "train"), ("test", "val"), ("val", "train"))
"""(split searched, split searched in): each image of the first is matched to its nearest in the second."""

SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}

LEAK_CONSEQUENCES = {
    ("test", "train"): "the test score is optimistic.",
    ("test", "val"): "the test score may be slightly optimistic (validation picked the best epoch).",
    ("val", "train"): "validation accuracy is optimistic, and it steered early stopping.",
}


class Rows(Protocol):
    """Rows of features, read a slice or a list of indices at a time."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class AuditSettings:
    """How the audit searches, folds and projects; the defaults are what docs/audit.md measured.

    Attributes:
        exact: Cosine similarity from which a pair is an exact copy.
        near: Cosine similarity from which a pair is a near-copy.
        block: Rows compared at once: a block of similarities is ``block**2`` floats.
        basis_width: Directions the leak search screens pairs in before comparing them in full.
        basis_sample: Rows those directions are found from, at most.
        folds: Folds of the linear head that gives every training image an unseen prediction.
        components: PCA components the head is fitted on (the features' main directions).
        pca_sample: Rows the PCA is fitted on, at most.
        label_filter: cleanlab's ``filter_by`` (:func:`find_label_issues`).
        map_points: Test images drawn on the map, at most.
        listed: Leak pairs and label-issue candidates kept in the audit, each.
        seed: Seed of the folds, the samples and the projection.
    """

    exact: float = EXACT_SIMILARITY
    near: float = NEAR_SIMILARITY
    block: int = BLOCK_ROWS
    basis_width: int = 128
    basis_sample: int = 4096
    folds: int = 5
    components: int = 128
    pca_sample: int = 20_000
    label_filter: str = LABEL_FILTER
    map_points: int = 2000
    listed: int = 50
    seed: int = 0


@dataclass(frozen=True)
class SplitEmbeddings:
    """One split as the audit sees it: names, content identities, labels and feature rows."""

    name: str
    ids: Sequence[str]
    identities: Sequence[str]
    labels: np.ndarray
    rows: Rows

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class LeakPair:
    """An image of one split and its most similar image in an earlier split."""

    kind: str
    """``exact`` (the same picture) or ``near`` (a near-copy)."""
    split: str
    index: int
    id: str
    label: int
    other_split: str
    other_index: int
    other_id: str
    other_label: int
    similarity: float


@dataclass(frozen=True)
class LeakCount:
    """How many images of ``split`` have an exact copy, or only a near-copy, in ``other_split``."""

    split: str
    other_split: str
    exact: int
    near: int

    @property
    def total(self) -> int:
        return self.exact + self.near


@dataclass(frozen=True)
class LabelIssue:
    """A training image whose given label looks wrong to a head that did not see it."""

    index: int
    id: str
    given: int
    suspected: int
    confidence: float
    """The unseen head's probability of the suspected label."""
    given_probability: float


@dataclass(frozen=True)
class MapPoint:
    """A test image on the 2-D map of the test embeddings."""

    id: str
    x: float
    y: float
    label: int
    predicted: int

    @property
    def mistake(self) -> bool:
        return self.label != self.predicted


@dataclass(frozen=True)
class DataAudit:
    """What the audit of one run's data found (JSON-safe through :meth:`to_dict`).

    Attributes:
        class_names: Label index -> class name.
        sizes: Images per split.
        exact_threshold: Similarity from which a pair counted as an exact copy.
        near_threshold: Similarity from which a pair counted as a near-copy.
        leak_counts: Per pair of splits searched, the images with a copy in the other.
        leaks: At most :attr:`AuditSettings.listed` pairs, in :func:`find_leaks`' order.
        label_folds: Folds of the unseen head; 0 when the classes were too small to check.
        label_issue_count: Training images that look mislabelled, in all.
        label_issues: The most likely first, at most :attr:`AuditSettings.listed`.
        map_points: The embedding map, a sample of the test split.
        map_method: How the map was projected, in words.
        seconds: Time the audit took once the features were read.
        run_id: The run audited ("" until the caller says).
        fingerprint: Fingerprint of the data audited.
        created_at: When the audit was made (seconds since the epoch).
    """

    class_names: tuple[str, ...]
    sizes: Mapping[str, int]
    exact_threshold: float
    near_threshold: float
    leak_counts: tuple[LeakCount, ...]
    leaks: tuple[LeakPair, ...]
    label_folds: int
    label_issue_count: int
    label_issues: tuple[LabelIssue, ...]
    map_points: tuple[MapPoint, ...]
    map_method: str
    seconds: float = 0.0
    run_id: str = ""
    fingerprint: str = ""
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sizes": dict(self.sizes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataAudit:
        """Read a stored audit; a missing or mistyped key raises KeyError or TypeError."""
        return cls(
            class_names=tuple(data["class_names"]),
            sizes={str(name): int(count) for name, count in data["sizes"].items()},
            exact_threshold=float(data["exact_threshold"]),
            near_threshold=float(data["near_threshold"]),
            leak_counts=tuple(LeakCount(**item) for item in data["leak_counts"]),
            leaks=tuple(LeakPair(**item) for item in data["leaks"]),
            label_folds=int(data["label_folds"]),
            label_issue_count=int(data["label_issue_count"]),
            label_issues=tuple(LabelIssue(**item) for item in data["label_issues"]),
            map_points=tuple(MapPoint(**item) for item in data["map_points"]),
            map_method=str(data["map_method"]),
            seconds=float(data["seconds"]),
            run_id=str(data["run_id"]),
            fingerprint=str(data["fingerprint"]),
            created_at=float(data["created_at"]),
        )

    def warnings(self) -> list[str]:
        """What a stakeholder should know, one sentence each; empty when nothing was found."""
        found = [leak_sentence(count) for count in self.leak_counts if count.total]
        if self.label_issue_count:
            found.append(f"{_images(self.label_issue_count, 'training')} "
                         f"{'looks' if self.label_issue_count == 1 else 'look'} mislabelled (see the audit).")
        return found

    def criteria(self) -> str:
        """The thresholds used, in words, so a reader can judge the counts."""
        return (f"Exact copy: the same file, or a cosine similarity of the frozen backbone's "
                f"pooled features of at least {self.exact_threshold:g}; near-copy: at least "
                f"{self.near_threshold:g}. "
                + (f"Labels checked by a linear head in {self.label_folds} folds (confident learning)."
                   if self.label_folds else "Labels not checked: a class has fewer than 2 training images."))


def leak_sentence(count: LeakCount) -> str:
    """E.g. "12 test images have a near-copy in training (3 exact): the test score is optimistic."."""
    images = _images(count.total, SPLIT_WORDS[count.split])
    where = SPLIT_WORDS[count.other_split]
    verb = "has" if count.total == 1 else "have"
    if not count.near:
        what = f"{verb} an exact copy in {where}"
    else:
        what = f"{verb} a near-copy in {where}" + (f" ({count.exact} exact)" if count.exact else "")
    return f"{images} {what}: {LEAK_CONSEQUENCES[(count.split, count.other_split)]}"


def _images(count: int, split_word: str) -> str:
    return f"{count:,} {split_word} image{'' if count == 1 else 's'}"


# ---- the whole audit -----------------------------------------------------------------------


def audit_embeddings(
    splits: Sequence[SplitEmbeddings], class_names: Sequence[str], test_predicted: Sequence[int],
    settings: AuditSettings = AuditSettings(),
) -> DataAudit:
    """Leaks across the splits, label issues in training and the test map, in one audit.

    Args:
        splits: The train, val and test splits (by :attr:`SplitEmbeddings.name`).
        test_predicted: The run's predicted class of each test image, in the split's order.
    """
    started = time.perf_counter()
    by_name = {split.name: split for split in splits}
    leaks = find_leaks(splits, settings)
    train, test = by_name["train"], by_name["test"]
    folds = label_folds(train.labels, settings.folds)
    issues: list[LabelIssue] = []
    if folds:
        probabilities = out_of_fold_probabilities(train.rows, train.labels, len(class_names), folds, settings)
        issues = find_label_issues(train, probabilities, settings.label_filter)
    points, method = embedding_map(test, np.asarray(test_predicted, dtype=np.int64), settings)
    return DataAudit(
        class_names=tuple(class_names),
        sizes={split.name: len(split) for split in splits},
        exact_threshold=settings.exact,
        near_threshold=settings.near,
        leak_counts=count_leaks(leaks, [pair for pair in SEARCH_ORDER if {*pair} <= by_name.keys()]),
        leaks=tuple(leaks[:settings.listed]),
        label_folds=folds,
        label_issue_count=len(issues),
        label_issues=tuple(issues[:settings.listed]),
        map_points=tuple(points),
        map_method=method,
        seconds=time.perf_counter() - started,
    )


# ---- leaks ---------------------------------------------------------------------------------


def sample_of(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``size`` distinct indices below ``count``, ascending (rows on disk are read in order)."""
    return np.sort(rng.choice(count, min(count, size), replace=False))


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 as float32 (all-zero rows stay zero: similar to nothing)."""
    flat = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.maximum(norms, np.finfo(np.float32).tiny)


def nearest_rows(query: Rows, reference: Rows, block: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the index of its most similar reference row and their cosine similarity.

    Exact, by brute force a block at a time: blocks of ``block`` query rows meet blocks of
    ``block`` reference rows, one matrix product each, so memory stays at a few ``block x block``
    arrays whatever the sizes. Queries without any reference get index -1 and similarity -inf.
    """
    where = np.full(len(query), -1, dtype=np.int64)
    best = np.full(len(query), -np.inf, dtype=np.float32)
    for q0 in range(0, len(query), block):
        queries = unit_rows(query[q0:q0 + block])
        for r0 in range(0, len(reference), block):
            _keep_best(where, best, q0, *_block_nearest(queries, unit_rows(reference[r0:r0 + block]), r0))
    return where, best


def _block_nearest(queries: np.ndarray, references: np.ndarray, offset: int) -> tuple[np.ndarray, ...]:
    """Each query's most similar reference of one block: (rows, reference indices, similarities)."""
    similarities = queries @ references.T
    top = similarities.argmax(axis=1)
    rows = np.arange(len(queries))
    return rows, top + offset, similarities[rows, top]


def _keep_best(where: np.ndarray, best: np.ndarray, offset: int, rows: np.ndarray, found: np.ndarray,
               values: np.ndarray) -> None:
    """Record the matches that beat the best so far (``rows`` relative to ``offset``)."""
    better = values > best[offset + rows]
    where[offset + rows[better]] = found[better]
    best[offset + rows[better]] = values[better]


@dataclass(frozen=True)
class Projection:
    """Unit rows projected on an orthonormal basis, with the length of what the basis misses.

    For unit rows x and y with projections p and residual lengths r, Cauchy-Schwarz bounds their
    similarity: ``x . y <= p_x . p_y + r_x r_y``. Real pooled features keep most of their length
    in 128 of 1280 directions (87 % on the flower photos), so the bound rules out all but a
    few pairs at a tenth of the cost, and only those few are compared in full.
    """

    basis: np.ndarray
    rows: np.ndarray
    residual: np.ndarray

    @classmethod
    def of(cls, rows: Rows, basis: np.ndarray, block: int) -> Projection:
        parts = [_project(unit_rows(rows[start:start + block]), basis)
                 for start in range(0, len(rows), block)]
        if not parts:
            return cls(basis, np.zeros((0, basis.shape[1]), np.float32), np.zeros(0, np.float32))
        return cls(basis, np.concatenate([p for p, _ in parts]), np.concatenate([r for _, r in parts]))


def _project(units: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    projected = units @ basis
    length = np.einsum("ij,ij->i", units, units)  # 1, or 0 for an all-zero row
    return projected, np.sqrt(np.maximum(length - np.einsum("ij,ij->i", projected, projected), 0))


def principal_basis(splits: Sequence[SplitEmbeddings], width: int, sample: int, seed: int) -> np.ndarray:
    """Up to ``width`` orthonormal directions that keep most of the unit rows' length (a sample's).

    Any orthonormal basis keeps the screening exact; a better one only screens out more, and
    two power iterations of a randomized SVD screen as well as the exact eigenvectors (on the
    flower photos, 3 in 10,000 pairs pass at 0.90 either way).
    """
    from sklearn.utils.extmath import randomized_svd

    rng = np.random.default_rng(seed)
    total = sum(len(split) for split in splits)
    rows = np.concatenate([unit_rows(split.rows[sample_of(len(split), sample * len(split) // total + 1, rng)])
                           for split in splits if len(split)])
    if width >= min(rows.shape):
        directions = np.linalg.svd(rows, full_matrices=False)[2]
    else:
        directions = randomized_svd(rows, width, n_iter=2, random_state=seed)[2]
    return np.ascontiguousarray(directions[:width].T, dtype=np.float32)


BOUND_SLACK = 1e-4
"""Float32 rounding of the bound is far smaller; candidates are taken this much below the threshold."""

DENSE_SHARE = 0.02
"""When more of a block's pairs pass the bound (features all alike), the block is compared in full."""


def nearest_above(query: Rows, reference: Rows, threshold: float, basis: np.ndarray,
                  block: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_rows` for the queries whose nearest reference reaches ``threshold``.

    Those get exactly what :func:`nearest_rows` gives; the others a lower similarity or none
    (-1, -inf). Pairs are first screened by the bound of :class:`Projection`, so the full rows
    of a pair are compared only when it may reach the threshold. Where too many pass (features
    all alike), a block is compared in full, and once a whole block of queries was, the
    screening stops: it costs a tenth of a full comparison and would save nothing.
    """
    where = np.full(len(query), -1, dtype=np.int64)
    best = np.full(len(query), -np.inf, dtype=np.float32)
    projected = Projection.of(reference, basis, block)
    screening = True
    for q0 in range(0, len(query), block):
        queries = unit_rows(query[q0:q0 + block])
        q_rows, q_residual = _project(queries, basis)
        dense = 0
        for r0 in range(0, len(reference), block):
            r1 = min(r0 + block, len(reference))
            passed = None
            if screening:
                bound = q_rows @ projected.rows[r0:r1].T + np.outer(q_residual, projected.residual[r0:r1])
                passed = bound >= threshold - BOUND_SLACK
            if passed is None or np.count_nonzero(passed) > DENSE_SHARE * passed.size:
                dense += 1
                _keep_best(where, best, q0, *_block_nearest(queries, unit_rows(reference[r0:r1]), r0))
            elif passed.any():
                rows, found = np.nonzero(passed)
                _keep_best(where, best, q0, *_candidates_nearest(queries, reference, rows, found + r0))
        screening = screening and dense < -(-len(reference) // block)
    return where, best


def _candidates_nearest(queries: np.ndarray, reference: Rows, rows: np.ndarray,
                        found: np.ndarray) -> tuple[np.ndarray, ...]:
    """The most similar of each query's candidate references, compared in full."""
    needed, position = np.unique(found, return_inverse=True)
    similarities = np.einsum("ij,ij->i", queries[rows], unit_rows(reference[needed])[position])
    order = np.lexsort((-similarities, rows))
    _, first = np.unique(rows[order], return_index=True)
    chosen = order[first]
    return rows[chosen], found[chosen], similarities[chosen]


def find_leaks(splits: Sequence[SplitEmbeddings],
               settings: AuditSettings = AuditSettings()) -> list[LeakPair]:
    """Images of a later split with a copy or near-copy in an earlier one.

    Sorted by pair of splits (test in training first, as in :data:`SEARCH_ORDER`), exact copies
    before near ones, the most similar first.

    Each image of ``test`` is matched to its nearest image in ``train`` and in ``val``, each image
    of ``val`` to its nearest in ``train`` (:data:`SEARCH_ORDER`): one pair per image and split
    at most, so an image with three copies in training is counted once.
    """
    by_name = {split.name: split for split in splits if len(split)}
    if len(by_name) < 2:
        return []
    basis = principal_basis(list(by_name.values()), settings.basis_width, settings.basis_sample,
                            settings.seed)
    pairs = [pair for later, earlier in SEARCH_ORDER if later in by_name and earlier in by_name
             for pair in leaks_between(by_name[later], by_name[earlier], basis, settings)]
    return sorted(pairs, key=lambda pair: (SEARCH_ORDER.index((pair.split, pair.other_split)),
                                           pair.kind != "exact", -pair.similarity, pair.index))


def leaks_between(query: SplitEmbeddings, reference: SplitEmbeddings, basis: np.ndarray,
                  settings: AuditSettings) -> list[LeakPair]:
    """Pairs (image of ``query``, its nearest in ``reference``) that are copies or near-copies.

    Equal content identities are exact copies whatever their features say (all-zero features,
    for one, are similar to nothing).
    """
    where, best = nearest_above(query.rows, reference.rows, settings.near, basis, settings.block)
    first_with = {identity: j for j, identity in reversed(list(enumerate(reference.identities)))}
    same = {i: first_with[identity] for i, identity in enumerate(query.identities) if identity in first_with}
    pairs = []
    for i in sorted(set(np.flatnonzero(best >= settings.near).tolist()) | same.keys()):
        j = same.get(i, int(where[i]))
        similarity = float(best[i]) if j == where[i] else _similarity(query.rows[[i]], reference.rows[[j]])
        kind = "exact" if i in same or similarity >= settings.exact else "near"
        pairs.append(LeakPair(kind, query.name, i, query.ids[i], int(query.labels[i]), reference.name, j,
                              reference.ids[j], int(reference.labels[j]), round(min(similarity, 1.0), 6)))
    return pairs


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float((unit_rows(a) @ unit_rows(b).T)[0, 0])


def count_leaks(pairs: Sequence[LeakPair], searched: Sequence[tuple[str, str]]) -> tuple[LeakCount, ...]:
    """Per pair of splits searched, the images with an exact copy and those with only a near-copy."""
    return tuple(
        LeakCount(later, earlier,
                  sum(p.kind == "exact" for p in pairs if (p.split, p.other_split) == (later, earlier)),
                  sum(p.kind == "near" for p in pairs if (p.split, p.other_split) == (later, earlier)))
        for later, earlier in searched
    )


# ---- labels --------------------------------------------------------------------------------


def label_folds(labels: np.ndarray, folds: int) -> int:
    """Folds the label check can use: each class needs an image in at least two of them (0: none)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    present = counts[counts > 0]
    if len(present) < 2 or present.min() < 2:
        return 0
    return int(min(folds, present.min()))


def reduced_features(rows: Rows, components: int, sample: int, seed: int) -> np.ndarray:
    """Unit rows projected on their main directions (PCA fitted on a sample), read a block at a time.

    The projection keeps what tells images apart and makes each fold's linear head several
    times faster to fit than on all 1280 features.
    """
    from sklearn.decomposition import PCA

    count = len(rows)
    fitted = unit_rows(rows[sample_of(count, sample, np.random.default_rng(seed))])
    width = min(components, *fitted.shape)
    pca = PCA(width, svd_solver="randomized" if width < min(fitted.shape) else "full", random_state=seed)
    pca.fit(fitted)
    block = 8192
    return np.concatenate([pca.transform(unit_rows(rows[start:start + block])).astype(np.float32)
                           for start in range(0, count, block)])


def out_of_fold_probabilities(
    rows: Rows, labels: np.ndarray, n_classes: int, folds: int, settings: AuditSettings = AuditSettings(),
) -> np.ndarray:
    """Each training image's class probabilities from a linear head fitted on the other folds.

    The components are scaled together so that rows have mean squared length 1: the head's
    regularisation then means the same on features that all look alike (a random backbone's)
    as on spread-out ones. They are not standardised one by one: scaling the faint ones up to
    the strong ones lets the head fit noise (on the flower photos, several times as many
    correctly labelled images were flagged; docs/audit.md).

    Args:
        folds: At least 2, and at most the smallest class's size (:func:`label_folds`).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels, dtype=np.int64)
    features = reduced_features(rows, settings.components, settings.pca_sample, settings.seed)
    features /= max(float(np.sqrt(np.mean(np.einsum("ij,ij->i", features, features)))), 1e-12)
    probabilities = np.zeros((len(labels), n_classes))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=settings.seed)
    for fitted, held in splitter.split(features, labels):
        head = LogisticRegression(max_iter=500).fit(features[fitted], labels[fitted])
        probabilities[np.ix_(held, head.classes_)] = head.predict_proba(features[held])
    return probabilities


def find_label_issues(train: SplitEmbeddings, probabilities: np.ndarray,
                      filter_by: str = LABEL_FILTER) -> list[LabelIssue]:
    """Confident learning (cleanlab) on unseen probabilities: likely label errors, the worst first.

    An image is flagged when the head's probability of its given label (its self-confidence)
    is below what images of that class usually get, at most as many as the estimated label
    noise (``low_self_confidence``), ranked by how confidently another class is predicted
    over the given one (cleanlab's normalized margin, most negative first). On the flower photos with 2 %
    of labels flipped it finds as many as cleanlab's default ``prune_by_noise_rate`` (80 %
    against 77 %) and flags half as many others (20 against 42; docs/audit.md).
    """
    from cleanlab.filter import find_label_issues as cleanlab_issues

    labels = np.asarray(train.labels, dtype=np.int64)
    ranked = cleanlab_issues(labels, probabilities, filter_by=filter_by,
                             return_indices_ranked_by="normalized_margin", n_jobs=1)
    issues = []
    for i in np.asarray(ranked, dtype=np.int64).tolist():
        suspected = int(probabilities[i].argmax())
        issues.append(LabelIssue(i, train.ids[i], int(labels[i]), suspected,
                                 round(float(probabilities[i, suspected]), 6),
                                 round(float(probabilities[i, labels[i]]), 6)))
    return issues


# ---- the map -------------------------------------------------------------------------------

TSNE_MIN_POINTS = 10
"""Fewer test images than this are mapped by PCA alone: t-SNE needs a neighbourhood."""

TSNE_STEPS = 500
"""t-SNE iterations (scikit-learn's default is 1000): on the 1,000 flower photos the map keeps as
many neighbourhoods by then (trustworthiness 0.955 at 10 neighbours, both), at 60 % of the time."""


def embedding_map(
    test: SplitEmbeddings, predicted: np.ndarray, settings: AuditSettings = AuditSettings(),
) -> tuple[list[MapPoint], str]:
    """A 2-D picture of the test embeddings: PCA to 50 dimensions, then t-SNE, on a sample.

    Returns:
        The points and how they were made, in words.
    """
    count = len(test)
    if not count:
        return [], "no test images"
    picked = sample_of(count, settings.map_points, np.random.default_rng(settings.seed))
    xy, method = project(unit_rows(test.rows[picked]), settings.seed)
    shown = f"{len(picked):,} of {count:,}" if len(picked) < count else f"all {count:,}"
    points = [MapPoint(test.ids[i], round(float(x), 4), round(float(y), 4), int(test.labels[i]),
                       int(predicted[i])) for i, (x, y) in zip(picked.tolist(), xy, strict=True)]
    return points, f"{method} of {shown} test images"


def project(rows: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """Rows in two dimensions (t-SNE after PCA; PCA alone for a handful), and the method's name."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if len(rows) < 3:
        return np.zeros((len(rows), 2)), "no projection"
    reduced = PCA(min(50, *rows.shape), random_state=seed).fit_transform(rows)
    if len(rows) < TSNE_MIN_POINTS:
        return reduced[:, :2], "PCA"
    tsne = TSNE(2, perplexity=min(30.0, (len(rows) - 1) / 3), init="pca", max_iter=TSNE_STEPS,
                random_state=seed)
    return tsne.fit_transform(reduced), "t-SNE (after PCA to 50 dimensions)"
