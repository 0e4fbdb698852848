"""Pairing two stored runs image by image (:mod:`tlcore.report.paired`), from their artifacts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from tlcore.data.folder import folder_root
from tlcore.errors import DatasetError
from tlcore.paths import data_roots, is_inside
from tlcore.records import RunArtifacts, RunRecord
from tlcore.report.paired import NotPairedError, PairedComparison, TestPredictions, compare_paired
from tlcore.report.summaries import run_label
from tlcore.runs.store import RunStore


def run_predictions(store: RunStore, run: RunRecord) -> TestPredictions:
    """A finished run's answer for every test image.

    Raises:
        NotPairedError: The run kept no per-image answers (trained before they were kept).
    """
    if not (store.artifact_dir(run.id) / RunArtifacts.PREDICTIONS).exists():
        raise NotPairedError(
            f"Run {run.id} kept no per-image test answers (it was trained before they were kept, "
            "or has not finished), so it cannot be paired.",
            "Train it again (tick Train again, or pass --force) to pair it with other runs.",
        )
    return TestPredictions.from_dict(store.read_json(run.id, RunArtifacts.PREDICTIONS))


def pair_runs(store: RunStore, first: RunRecord, second: RunRecord) -> PairedComparison:
    """``second`` against ``first`` on their common test split (see :func:`compare_paired`)."""
    labels = (run_label(first, short=True), run_label(second, short=True))
    return compare_paired(run_predictions(store, first), run_predictions(store, second), labels)


def paired_payload(comparison: PairedComparison) -> dict[str, object]:
    """The JSON shape of ``compare A B --paired --json``."""
    payload = asdict(comparison)
    payload["per_class"] = [{**row, **delta.deltas()}  # properties are not fields: asdict skips them
                            for row, delta in zip(payload["per_class"], comparison.per_class, strict=True)]
    payload["clear"] = comparison.clear
    payload["sentence"] = comparison.sentence()
    return payload


def image_files(run: RunRecord, image_ids: Iterable[str]) -> dict[str, Path]:
    """Test image id -> its image file, for the ids whose file is still there.

    Only a ``folder:`` dataset keeps its images as files named by their ids (paths relative to
    the dataset folder); builtin and TFDS images have no file, so they map to nothing. The ids
    come from the run's stored answers, so a path is only given when it resolves to a file inside
    the data roots, as the dataset's own images must.
    """
    dataset = run.spec.dataset
    if dataset.kind != "folder":
        return {}
    roots = data_roots()
    try:
        root = folder_root(dataset, roots)
    except DatasetError:  # moved away, or outside the roots now: the images are named only
        return {}
    found = {}
    for image_id in image_ids:
        path = (root / image_id).resolve()
        if is_inside(path, roots) and path.is_file():
            found[image_id] = path
    return found
