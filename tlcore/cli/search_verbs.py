"""``lr-find`` and ``search``: the LR range test and the head search, with the flags of ``train``.

Both work on what the spec's run would train on, in the foreground, and print a compact table;
``--json`` gives everything. ``search`` saves its best setting as a named experiment, which the
Configure page and ``train`` can start from.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from tlcore.cli.output import describe_table, emit, say
from tlcore.cli.spec_flags import SPEC_SECTIONS, add_section_arguments, dest, spec_from_args
from tlcore.config import TrainSpec, setting
from tlcore.errors import ConfigError

CURVE_ROWS = 15
BUDGET = "train.search_budget_seconds"


def cmd_lr_find(args: argparse.Namespace) -> int:
    from tlcore.training.lr_finder import lr_range_test, rate_field

    spec = spec_from_args(args)
    finding = lr_range_test(spec, **({"steps": args.steps} if args.steps else {}))
    payload = {**finding.to_dict(), "applies_to": rate_field(spec.train)}
    emit(args, payload, _describe_finding)
    return 0


def curve_rows(payload: dict[str, Any], count: int = CURVE_ROWS) -> list[dict[str, Any]]:
    """About ``count`` steps spread over the curve, the suggested rate's nearest step marked."""
    rates = np.asarray(payload["rates"], dtype=float)
    nearest = int(np.argmin(np.abs(np.log10(rates) - np.log10(payload["suggestion"]))))
    picked = sorted({*np.linspace(0, len(rates) - 1, min(count, len(rates))).round().astype(int), nearest})
    return [{"step": int(step) + 1, "learning rate": f"{rates[step]:.2e}", "loss": payload["losses"][step],
             "smoothed": payload["smoothed"][step], "": "<- suggested" if step == nearest else ""}
            for step in picked]


def _describe_finding(payload: dict[str, Any]) -> str:
    inputs = "cached features" if payload["on_features"] else "images"
    return "\n".join([
        describe_table(curve_rows(payload)),
        f"suggested {payload['applies_to'].replace('_', ' ')} {payload['suggestion']:.3g}: {payload['rule']}",
        f"minimum / 10: {payload['min_over_ten']:.3g} · {len(payload['rates'])} steps on {inputs} in "
        f"{payload['seconds']:.1f} s",
    ])


def cmd_search(args: argparse.Namespace) -> int:
    from tlcore.runs.experiments import save_experiment, search_experiment_name
    from tlcore.training.head_search import best_spec, head_search

    spec = spec_from_args(args)
    search = head_search(spec, **({"max_trials": args.trials} if args.trials else {}),
                         on_trial=lambda trial: print(_trial_line(trial.to_dict()), file=sys.stderr))
    name = args.save_as or search_experiment_name(spec)
    saved = save_experiment(name, best_spec(spec, search))
    say(args, f"Best setting saved as the experiment {name!r}.")
    emit(args, {"search": search.to_dict(), "experiment": name, "spec": saved.to_dict()}, _describe_search)
    return 0


def _trial_line(trial: dict[str, Any]) -> str:
    settings = ", ".join(f"{name.replace('_', ' ')} {value:g}" for name, value in trial["params"].items())
    return (f"trial {trial['number']}: validation accuracy {trial['val_accuracy']:.1%} ({settings}; "
            f"{trial['seconds']:.1f} s)")


def _describe_search(payload: dict[str, Any]) -> str:
    search = payload["search"]
    best = search["best"]["number"]
    rows = [{"trial": trial["number"],
             **{name.replace("_", " "): value for name, value in trial["params"].items()},
             "val accuracy": f"{trial['val_accuracy']:.1%}", "val loss": trial["val_loss"],
             "seconds": trial["seconds"], "": "<- best" if trial["number"] == best else ""}
            for trial in search["trials"]]
    return "\n".join([
        describe_table(rows),
        f"{len(rows)} trials in {search['spent_seconds']:.1f} s (budget {search['budget_seconds']:g} s)",
        "best: " + _trial_line(search["best"]),
        f"saved as the experiment {payload['experiment']!r}",
    ])


def _budget(text: str) -> int:
    """Seconds, checked against the spec field's bound."""
    try:
        value = int(text)
        setting(TrainSpec, "search_budget_seconds").check(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"The budget must be whole seconds, got {text!r}.") from None
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"Expected a whole number of at least 1, got {text!r}.")
    return value


def register(verbs: argparse._SubParsersAction) -> None:
    lr_find = verbs.add_parser("lr-find", help="LR range test of the first stage: loss against a rising rate")
    add_section_arguments(lr_find, SPEC_SECTIONS)
    lr_find.add_argument("--steps", type=_positive, default=None,
                         help="steps from a rate of 1e-7 to 10 (at least 10; default: 100)")
    lr_find.add_argument("--json", action="store_true")
    lr_find.set_defaults(handler=cmd_lr_find, name="")
    search = verbs.add_parser("search", help="search the head's settings on cached features; save the best")
    add_section_arguments(search, SPEC_SECTIONS, skip=(BUDGET,))
    search.add_argument("--budget-seconds", dest=dest(*BUDGET.split(".")),
                        type=_budget, default=None, metavar="S",
                        help="no trial starts after this long; "
                             f"{setting(TrainSpec, 'search_budget_seconds').bound.describe()} "
                             f"(default: {TrainSpec().search_budget_seconds})")
    search.add_argument("--trials", type=_positive, default=None,
                        help="at most this many trials (default: 200; the budget usually ends it first)")
    search.add_argument("--save-as", default="", metavar="NAME",
                        help="experiment name for the best setting (default: head search · BACKBONE · DATA)")
    search.add_argument("--json", action="store_true")
    search.set_defaults(handler=cmd_search, name="")
