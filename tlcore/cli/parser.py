"""``python -m tlcore``: everything the app does, from a terminal.

User errors (``TLError``) exit with code 2 and one line that says what to do; nothing a user
types produces a traceback. Each verb lives in a module of this package with a ``register``
function that adds its sub-command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from tlcore.cli import (
    audit_verbs,
    catalogue_verbs,
    compare_verbs,
    doctor_verbs,
    experiment_verbs,
    export_verbs,
    predict_verbs,
    run_verbs,
    search_verbs,
    train_verbs,
)
from tlcore.cli.output import EXIT_USER_ERROR
from tlcore.data.labels import visible_label
from tlcore.errors import ConfigError, TLError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose complaints are user errors: one line and exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message if message.endswith(".") else f"{message}.", f"See `{self.prog} --help`.")


VERB_MODULES = (
    train_verbs,
    experiment_verbs,
    search_verbs,
    run_verbs,
    catalogue_verbs,
    compare_verbs,
    audit_verbs,
    predict_verbs,
    export_verbs,
    doctor_verbs,
)
"""Every module that registers sub-commands, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tlcore", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    for module in VERB_MODULES:
        module.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except TLError as exc:
        print(f"error: {visible_label(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
