"""Tables of runs for people: the run history and the side-by-side comparison.

Pure functions from store records to rows (lists of dicts), shared by the app and tests, so
the pages only render them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from tlcore.config import RunSpec
from tlcore.data.uploads import source_label
from tlcore.records import RunRecord, RunSummary


def describe_spec(spec: RunSpec) -> str:
    """``frozen · mobilenet_v2 · cats_vs_dogs.zip``: :meth:`RunSpec.describe` for pages.

    An uploaded archive is called by its uploaded name, not by its server path (which
    :meth:`RunSpec.describe` and the CLI keep).
    """
    return f"{spec.train.strategy} · {spec.backbone.name} · {source_label(spec.dataset.source)}"


def backbone_label(spec: RunSpec) -> str:
    """The backbone with its width, ``mobilenet_v2 ×0.35``."""
    alpha = spec.backbone.alpha
    return spec.backbone.name + (f" ×{alpha:g}" if alpha else "")


def run_name(run: RunRecord, short: bool = False) -> str:
    """What people call a run: its name, else what it is (only its strategy, when ``short``)."""
    return run.name or (run.spec.train.strategy if short else describe_spec(run.spec))


def run_label(run: RunRecord, short: bool = False) -> str:
    """A unique label: :func:`run_name`, then the id; ``short`` suits chart legends and titles."""
    return f"{run_name(run, short)} · {run.id}"


def headline_accuracy(run: RunRecord) -> float:
    """The run's test accuracy for a metric card; 0 while it has no summary (or never will)."""
    return run.summary.test_accuracy if run.summary else 0.0


MISSING = "—"
"""What a table shows for a number a run does not have (a failed run's accuracy)."""


def format_percent(share: float | None) -> str:
    """A share of 0..1 as people read it everywhere (``96.7%``), or :data:`MISSING` for None."""
    return MISSING if share is None else f"{share:.1%}"


def _backbone(run: RunRecord) -> str:
    return backbone_label(run.spec)


def history_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per run for the run history table, in the order given."""
    return [
        {
            "run": run.id,
            "name": run.name,
            "status": run.status,
            "dataset": source_label(run.spec.dataset.source),
            "backbone": _backbone(run),
            "strategy": run.spec.train.strategy,
            "best val acc": run.summary.best_val_accuracy if run.summary else None,
            "test acc": run.summary.test_accuracy if run.summary else None,
            "duration (s)": round(run.duration, 1) if run.duration is not None else None,
        }
        for run in runs
    ]


METRIC_COLUMNS = ("test accuracy", "macro F1", "best val accuracy", "train time (s)", "trainable params",
                  "epochs")
"""The summary's columns of :func:`comparison_rows` (empty for a run without a summary)."""


def comparison_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Headline test metrics and costs of finished runs, one row each."""
    return [
        {
            "run": run_label(run),
            "strategy": run.spec.train.strategy,
            "backbone": _backbone(run),
            **dict(zip(METRIC_COLUMNS, _metrics(run.summary), strict=True)),
        }
        for run in runs
    ]


def _metrics(summary: RunSummary | None) -> tuple[Any, ...]:
    if summary is None:
        return (None,) * len(METRIC_COLUMNS)
    return (summary.test_accuracy, summary.macro_f1, summary.best_val_accuracy, summary.train_seconds,
            summary.trainable_params, summary.epochs)


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
