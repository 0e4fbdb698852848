"""``doctor``: check, and on request rebuild, the run store, run folders and caches."""

from __future__ import annotations

import argparse


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the store, run folders and caches; ``--rebuild`` lists the run folders again."""
    from tlcore.runs import doctor

    if args.rebuild:
        print(doctor.rebuild().describe())
    checkup = doctor.check()
    print(checkup.describe())
    return 0 if checkup.healthy else 1


def register(verbs: argparse._SubParsersAction) -> None:
    doctor = verbs.add_parser("doctor", help="check the run store, run folders and caches")
    doctor.add_argument("--rebuild", action="store_true",
                        help="rebuild the run list from the run folders (a damaged store is kept aside)")
    doctor.set_defaults(handler=cmd_doctor)
