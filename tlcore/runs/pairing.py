"""Pairing two stored runs image by image (:mod:`tlcore.report.paired`), from their artifacts."""

from __future__ import annotations

from dataclasses import asdict

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
    payload["clear"] = comparison.clear
    payload["sentence"] = comparison.sentence()
    return payload
