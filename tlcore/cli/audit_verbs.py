"""``audit``: can we trust the test score? Copies across a run's splits and likely label errors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tlcore.cli.output import describe_table, emit, say
from tlcore.runs.store import RunStore
from tlcore.training.observer import PassProgress, TrainingObserver

SHOWN = 20
"""Pairs and candidates the text output lists (``--json`` has every one the audit kept)."""


class _PassLines(TrainingObserver):
    """One line on stderr per finished pass (decoding, features) and per note."""

    def on_pass(self, progress: PassProgress) -> None:
        if progress.done >= progress.total:
            print(progress.describe(), file=sys.stderr)

    def note(self, message: str) -> None:
        print(message, file=sys.stderr)


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the run's stored audit, computing and storing it first when it has none (or --again)."""
    from tlcore.runs.auditing import audit_run, stored_audit

    store = RunStore()
    run = store.get(args.run_id)
    audit = None if args.again else stored_audit(store, run.id)
    reused = audit is not None
    if audit is None:
        say(args, f"Auditing run {run.id} from its frozen backbone's features...")
        audit = audit_run(store, run.id, observer=_PassLines())
    payload = {**audit.to_dict(), "reused": reused, "warnings": audit.warnings(),
               "criteria": audit.criteria()}
    emit(args, payload, describe_audit)
    return 0


def describe_audit(payload: dict[str, Any]) -> str:
    """The audit for people: warnings, the thresholds, the pairs and the candidates as tables."""
    sizes = " · ".join(f"{count:,} {name}" for name, count in payload["sizes"].items())
    how = "stored audit" if payload["reused"] else f"audited in {payload['seconds']:.1f} s"
    lines = [f"Run {payload['run_id']}: {sizes} images ({how})."]
    lines += [f"! {warning}" for warning in payload["warnings"]]
    if not payload["warnings"]:
        lines.append("No copies across splits and no likely label errors found.")
    lines += [payload["criteria"], "", _leak_table(payload), "", _issue_table(payload), "",
              f"Map: {payload['map_method']} (its points are in --json; the Compare page draws it)."]
    return "\n".join(lines)


def _leak_table(payload: dict[str, Any]) -> str:
    names, leaks = payload["class_names"], payload["leaks"]
    total = sum(count["exact"] + count["near"] for count in payload["leak_counts"])
    if not leaks:
        return "Copies across splits: none."
    rows = [{"kind": pair["kind"], "similarity": f"{pair['similarity']:.4f}",
             "image": f"{pair['split']} {pair['id']} [{names[pair['label']]}]",
             "copy of": f"{pair['other_split']} {pair['other_id']} [{names[pair['other_label']]}]"}
            for pair in leaks[:SHOWN]]
    return f"Copies across splits ({len(rows)} of {total} shown):\n{describe_table(rows)}"


def _issue_table(payload: dict[str, Any]) -> str:
    names, issues = payload["class_names"], payload["label_issues"]
    if not issues:
        return "Likely label errors: none."
    rows = [{"image": issue["id"], "given": names[issue["given"]], "suspected": names[issue["suspected"]],
             "confidence": f"{issue['confidence']:.0%}"} for issue in issues[:SHOWN]]
    return (f"Likely label errors ({len(rows)} of {payload['label_issue_count']} shown):\n"
            f"{describe_table(rows)}")


def register(verbs: argparse._SubParsersAction) -> None:
    audit = verbs.add_parser(
        "audit", help="can we trust the test score? copies across splits, likely label errors",
        description="Find test images with a copy or near-copy in training (and validation), and "
                    "training images that look mislabelled, from a run's frozen backbone features. "
                    "The audit is stored with the run and shown on the Compare page.")
    audit.add_argument("run_id")
    audit.add_argument("--json", action="store_true")
    audit.add_argument("--again", action="store_true", help="audit again even when the run has an audit")
    audit.set_defaults(handler=cmd_audit)
