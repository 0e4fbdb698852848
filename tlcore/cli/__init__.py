"""``python -m tlcore``: the command line, one module per group of verbs (see :mod:`.parser`)."""

from tlcore.cli.parser import build_parser, main
from tlcore.cli.spec_flags import spec_from_args

__all__ = ["build_parser", "main", "spec_from_args"]
