"""What each background task kind does (see :mod:`tlcore.runs.tasks`): call the engine, publish
its progress as it goes, return its result as JSON-able data."""

from __future__ import annotations

from typing import Any

from tlcore.config import RunSpec
from tlcore.runs.tasks import TASK_KINDS, Report
from tlcore.training.observer import BatchProgress, PassProgress, TrainingObserver


class ProgressReporter(TrainingObserver):
    """Publishes a task's passes (decoding, features) and steps, and its own lines, as progress."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.trials: list[dict[str, Any]] = []

    def on_pass(self, progress: PassProgress) -> None:
        share = progress.done / progress.total if progress.total else 0.0
        self.report({"share": share, "text": progress.describe()})

    def on_batch(self, progress: BatchProgress) -> None:
        if progress.steps:
            self.report({"share": progress.batch / progress.steps,
                         "text": f"Step {progress.batch} of {progress.steps}"})


def lr_find(spec: RunSpec, options: dict[str, Any], report: Report) -> dict[str, Any]:
    """The LR range test of ``spec``'s first stage."""
    from tlcore.training.lr_finder import lr_range_test

    return lr_range_test(spec, ProgressReporter(report)).to_dict()


def search(spec: RunSpec, options: dict[str, Any], report: Report) -> dict[str, Any]:
    """A head search on cached features; each finished trial is published as it comes."""
    from tlcore.training.head_search import best_spec, head_search

    reporter = ProgressReporter(report)
    budget = float(options.get("budget_seconds") or spec.train.search_budget_seconds)

    def on_trial(trial: Any) -> None:
        reporter.trials.append(trial.to_dict())
        best = max(t["val_accuracy"] for t in reporter.trials)
        spent = sum(t["seconds"] for t in reporter.trials)
        report({"share": min(1.0, spent / budget), "trials": reporter.trials,
                "text": f"{len(reporter.trials)} trial(s), best validation accuracy {best:.1%}"})

    result = head_search(spec, budget_seconds=budget, observer=reporter, on_trial=on_trial)
    return {**result.to_dict(), "best_spec": best_spec(spec, result).to_dict()}


def audit(spec: RunSpec, options: dict[str, Any], report: Report) -> dict[str, Any]:
    """The data audit of a finished run (``options["run_id"]``), stored with the run."""
    from tlcore.runs.auditing import audit_run
    from tlcore.runs.store import RunStore

    return audit_run(RunStore(), str(options["run_id"]), observer=ProgressReporter(report)).to_dict()


TASK_KINDS.update({"lr-find": f"{__name__}:lr_find", "search": f"{__name__}:search",
                   "audit": f"{__name__}:audit"})
