"""``experiments list|show|save|delete``: the Configure page's saved experiments, from a terminal.

``save`` takes the same flags as ``train``; ``train``/``submit`` of a saved experiment is
``show NAME --json`` fed back, or the app's Train page.
"""

from __future__ import annotations

import argparse
from typing import Any

from tlcore.cli.output import describe_rows, emit, json_verb
from tlcore.cli.spec_flags import add_spec_arguments, spec_from_args
from tlcore.runs.experiments import delete_experiment, list_experiments, load_experiment, save_experiment


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_experiments():
        spec = load_experiment(name)
        rows.append({"name": name, "strategy": spec.train.strategy, "backbone": spec.backbone.name,
                     "dataset": spec.dataset.source, "epochs": spec.train.total_epochs})
    emit(args, rows, describe_rows)
    return 0


def _describe_spec(payload: dict[str, Any]) -> str:
    lines = [f"experiment {payload['name']} (key {payload['key']})"]
    for part in ("dataset", "backbone", "train"):
        lines.append(f"  {part}: " + ", ".join(f"{k}={v}" for k, v in payload["spec"][part].items()))
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    spec = load_experiment(args.name)
    emit(args, {"name": spec.name, "key": spec.key(), "spec": spec.to_dict()}, _describe_spec)
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    spec = save_experiment(args.experiment, spec_from_args(args))
    emit(args, {"name": spec.name, "key": spec.key(), "spec": spec.to_dict()},
         lambda payload: f"saved experiment {payload['name']}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    load_experiment(args.name)  # an unknown name is an error, not a silent no-op
    delete_experiment(args.name)
    print(f"deleted experiment {args.name}")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    experiments = verbs.add_parser("experiments", help="saved experiments: list, show, save, delete")
    actions = experiments.add_subparsers(dest="action", required=True)
    json_verb(actions, "list", cmd_list, "list saved experiments, most recent first")
    json_verb(actions, "show", cmd_show, "one experiment's settings", "name")
    json_verb(actions, "delete", cmd_delete, "forget an experiment (its runs stay)", "name")
    save = actions.add_parser("save", help="save the settings given by flags under a name")
    save.add_argument("experiment", help="the experiment's name")
    add_spec_arguments(save)
    save.set_defaults(handler=cmd_save)
