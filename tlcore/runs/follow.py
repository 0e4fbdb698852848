"""Which run someone watching a run wants to see next, once it ends.

A person who queues an experiment more than once, or the classic experiment's three runs,
watches one run end and expects the next one of the same launch to take its place.
"""

from __future__ import annotations

from collections.abc import Sequence

from tlcore.records import RunRecord, RunStatus
from tlcore.runs.experiments import classic_experiment


def classic_keys(run: RunRecord) -> frozenset[str]:
    """Spec keys (:meth:`RunSpec.key`, without the data) of the classic experiment ``run`` belongs
    to; empty when it is not a classic run.

    A classic run is recognised by its name (each of the three is named after its strategy) and
    its batch by rebuilding the experiment from its spec, which gives the same three runs back
    from any of them.
    """
    batch = classic_experiment(run.spec)
    if run.name not in {spec.name for spec in batch}:
        return frozenset()
    return frozenset(spec.key() for spec in batch)


def same_batch(ended: RunRecord, other: RunRecord) -> bool:
    """Whether ``other`` was launched with ``ended``: the same experiment, or one classic experiment."""
    batch = classic_keys(ended)
    if batch:  # classic runs share names across batches (one per strategy), never settings
        return other.spec.key() in batch
    return bool(ended.name) and other.name == ended.name


def next_run(ended: RunRecord, runs: Sequence[RunRecord]) -> RunRecord | None:
    """The queued or running run of ``ended``'s batch to follow: a running one first, else the
    one that has waited longest (the queue's order)."""
    candidates = [run for run in runs if run.id != ended.id and run.is_active and same_batch(ended, run)]
    candidates.sort(key=lambda run: (run.status != RunStatus.RUNNING, run.created_at))
    return candidates[0] if candidates else None

