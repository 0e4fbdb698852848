"""How every verb speaks: text for people, strict JSON for programs, exit codes.

Class and run names come from datasets, hub models and people, so text output spells out
invisible characters, and JSON never carries NaN.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from tlcore import strict_json
from tlcore.data.labels import visible_label
from tlcore.report.summaries import format_percent

EXIT_USER_ERROR = 2


def say(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout)


def emit(args: argparse.Namespace, payload: Any, describe: Callable[[Any], str]) -> None:
    if args.json:  # strict JSON: a diverged run's NaN or infinite metric is null
        print(strict_json.dumps(payload, indent=1))
    else:
        print(describe(visible(payload)))


def visible(payload: Any) -> Any:
    """``payload`` with invisible characters of every string spelled out (JSON escapes its own).

    Class and run names come from datasets, hub models and people: raw, a line break or a
    right-to-left override in one would show a terminal another table than the real one.
    """
    if isinstance(payload, str):
        return visible_label(payload)
    if isinstance(payload, dict):
        return {key: visible(value) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [visible(value) for value in payload]
    return payload


def describe_rows(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    keys = list(rows[0])
    return "\n".join("  ".join(f"{k}={r.get(k)}" for k in keys) for r in rows)


def describe_table(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned columns: a comparison is read across, unlike the ``key=value`` lists."""
    import pandas as pd

    return pd.DataFrame(rows).to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.4g}")


def with_percents(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    """Rows for people: accuracies as the app shows them (``96.7%``, ``—`` for none).

    Only the text output: JSON and CSV keep the numbers, for programs.
    """
    return [{**row, **{column: format_percent(row[column]) for column in columns}} for row in rows]


def json_verb(verbs: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int],
              help_text: str, *positionals: str) -> argparse.ArgumentParser:
    """A sub-command with ``--json`` and the given positional arguments, handled by ``handler``."""
    sub = verbs.add_parser(name, help=help_text)
    for positional in positionals:
        sub.add_argument(positional)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=handler)
    return sub


def add_user_arguments(parser: argparse.ArgumentParser, admin: bool = False) -> None:
    """``--owner`` (and ``--admin``) for verbs that launch or manage runs on a shared server;
    launching verbs (no ``admin``) also take ``--mlflow``."""
    if not admin:
        parser.add_argument("--mlflow", metavar="URI", default=None,
                            help="also track the run(s) in MLflow at URI (kept with each run)")
    parser.add_argument("--owner", default=None,
                        help="who the run belongs to when sign-in is on (default: your Unix user)")
    if admin:
        parser.add_argument("--admin", action="store_true",
                            help="act as an admin (you must be listed in TL_ADMINS)")
