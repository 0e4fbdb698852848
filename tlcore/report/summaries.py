"""Tables of runs for people: the run history and the side-by-side comparison.

Pure functions from store records to rows (lists of dicts), shared by the app and tests, so
the pages only render them.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

from tlcore.records import RunRecord


def run_label(run: RunRecord) -> str:
    """A short, unique label: the run's name (or what it is), then its id."""
    return f"{run.name or run.spec.describe()} · {run.id}"


def short_label(run: RunRecord) -> str:
    """A label for chart legends and titles: the name (or the strategy), then the id."""
    return f"{run.name or run.spec.train.strategy} · {run.id}"


def _metric(run: RunRecord, key: str) -> Any:
    return (run.summary or {}).get(key)


def history_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per run for the run history table, in the order given."""
    return [
        {
            "run": run.id,
            "name": run.name,
            "status": run.status,
            "dataset": run.spec.dataset.source,
            "backbone": run.spec.backbone.name
            + (f" ×{run.spec.backbone.alpha:g}" if run.spec.backbone.alpha else ""),
            "strategy": run.spec.train.strategy,
            "best val acc": _metric(run, "best_val_accuracy"),
            "test acc": _metric(run, "test_accuracy"),
            "duration (s)": round(run.duration, 1) if run.duration is not None else None,
        }
        for run in runs
    ]


def comparison_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Headline test metrics and costs of finished runs, one row each."""
    return [
        {
            "run": run_label(run),
            "strategy": run.spec.train.strategy,
            "backbone": run.spec.backbone.name,
            "test accuracy": _metric(run, "test_accuracy"),
            "macro F1": _metric(run, "macro_f1"),
            "best val accuracy": _metric(run, "best_val_accuracy"),
            "train time (s)": _metric(run, "train_seconds"),
            "trainable params": _metric(run, "trainable_params"),
            "epochs": _metric(run, "epochs"),
        }
        for run in runs
    ]


def accuracy_gain(accuracy: float, baseline: float, against: str) -> str:
    """The difference of two accuracies in percentage points: "+46.7%" would read as relative."""
    return f"{100 * (accuracy - baseline):+.1f} points vs {against}"


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text with a header from the first row's keys (empty string for no rows)."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
