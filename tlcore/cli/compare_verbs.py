"""``compare``: finished runs side by side, or two of them image by image."""

from __future__ import annotations

import argparse

from tlcore.cli.output import describe_table, emit, visible, with_percents
from tlcore.errors import ConfigError, RunStateError
from tlcore.records import RunRecord, RunStatus
from tlcore.report.paired import PairedComparison
from tlcore.report.summaries import comparison_rows, rows_to_csv
from tlcore.runs.store import RunStore


def cmd_compare(args: argparse.Namespace) -> int:
    """The Compare page's test-metrics table (and its CSV download) for the runs named."""
    store = RunStore()
    runs = [store.get(run_id) for run_id in args.run_ids]
    # A stopped run has results when it finished an epoch; a finished one always counts.
    unfinished = [run for run in runs if run.status != RunStatus.FINISHED and run.summary is None]
    if unfinished:
        raise RunStateError(
            "Only finished runs (or runs stopped after an epoch) have test metrics to compare: "
            + ", ".join(f"{run.id} is {run.status}" for run in unfinished) + ".",
            "Wait for them to finish (`python -m tlcore show RUN`) or leave them out.",
        )
    if args.paired:
        return _compare_paired(args, store, runs)
    rows = comparison_rows(runs)
    if args.csv:
        print(rows_to_csv(visible(rows)), end="")
    else:
        emit(args, rows,
              lambda rows: describe_table(with_percents(rows, "test accuracy", "best val accuracy")))
    return 0


def _compare_paired(args: argparse.Namespace, store: RunStore, runs: list[RunRecord]) -> int:
    """Two runs image by image: accuracy intervals, fixed and broken images, McNemar's test."""
    from tlcore.runs.pairing import pair_runs, paired_payload

    if len(runs) != 2:
        raise ConfigError(f"--paired compares exactly two runs, got {len(runs)}.",
                          "Name two runs: `python -m tlcore compare A B --paired`.")
    comparison = pair_runs(store, *runs)
    emit(args, paired_payload(comparison), lambda payload: _describe_paired(comparison))
    return 0


def _describe_paired(comparison: PairedComparison) -> str:
    lines = [comparison.sentence()]
    for label, interval in zip(comparison.labels, comparison.accuracy, strict=True):
        lines.append(f"  {label}: accuracy {interval.value:.1%} (95 % interval {interval.low:.1%} to "
                     f"{interval.high:.1%})")
    lines += _per_class_lines(comparison)
    lines.append(f"  {len(comparison.disagreements)} image(s) answered differently.")
    return "\n".join(visible(line) for line in lines)  # each line: a break inside a name is spelled out


def _per_class_lines(comparison: PairedComparison) -> list[str]:
    """Per class: A, B and B - A for precision, recall and F1 (one can rise as another falls)."""
    header = "".join(f" {f'{metric} {column}':>8}"
                     for metric in ("P", "R", "F1") for column in ("A", "B", "B-A"))
    lines = ["  per class (P precision, R recall; B-A is B's change):", f"  {'class':<20}{header}"]
    for delta in comparison.per_class:
        cells = [(delta.precision, delta.precision_delta), (delta.recall, delta.recall_delta),
                 (delta.f1, delta.f1_delta)]
        lines.append(f"  {visible(delta.name)[:20]:<20}" + "".join(
            f" {pair[0]:>8.3f} {pair[1]:>8.3f} {change:>+8.3f}" for pair, change in cells))
    return lines


def register(verbs: argparse._SubParsersAction) -> None:
    compare = verbs.add_parser("compare", help="finished runs' test metrics side by side")
    compare.add_argument("run_ids", nargs="+", metavar="run_id")
    output = compare.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true", help="the table as CSV, as the app's download")
    compare.add_argument("--paired", action="store_true",
                         help="two runs image by image: accuracy intervals, McNemar's exact test")
    compare.set_defaults(handler=cmd_compare)
