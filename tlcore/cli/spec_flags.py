"""One flag per spec field, named, bounded and checked as the spec itself defines it."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, Setting, TrainSpec, settings
from tlcore.errors import ConfigError
from tlcore.runs.jobs import check_spec

SPEC_SECTIONS: dict[str, type] = {"dataset": DatasetSpec, "backbone": BackboneSpec, "train": TrainSpec}


ALIASES = {
    "dataset.source": ("--dataset",), "backbone.name": ("--backbone",), "train.learning_rate": ("--lr",),
    "train.fine_tune_learning_rate": ("--fine-tune-lr",), "train.early_stopping_patience": ("--patience",),
    "train.augmentations": ("--augment",), "train.fine_tune_blocks": ("--unfreeze-blocks",),
}


REQUIRED = ("dataset.source", "backbone.name", "train.strategy", "train.epochs")


_KIND_WORDS = {int: "a whole number", float: "a number"}


def spec_flag(section: str, name: str) -> str:
    """The flag of a spec field, named after it: ``--image-size``.

    A field named like a part of :class:`RunSpec` (``name``, the run's label) is prefixed with its
    section: ``--backbone-name``. A name shared by two sections (``seed``) is one flag for both.
    """
    clashes = name in {f.name for f in dataclasses.fields(RunSpec)}
    return "--" + (f"{section}_{name}" if clashes else name).replace("_", "-")


def dest(section: str, name: str) -> str:
    return spec_flag(section, name)[2:].replace("-", "_")


def _checked(info: Setting, value: Any) -> Any:
    try:
        info.check(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _converter(info: Setting, kind: type) -> Callable[[str], Any]:
    """Text to ``kind``, checked against the field's bound and choices as ``validate()`` does."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{info.label} must be {_KIND_WORDS.get(kind, kind.__name__)}, got {text!r}.") from None
        return _checked(info, value)

    return convert


def _items_converter(info: Setting) -> Callable[[str], list[str]]:
    """A comma list (``flip,zoom``) to checked items; repeated flags add up."""

    def convert(text: str) -> list[str]:
        return list(_checked(info, tuple(item.strip() for item in text.split(",") if item.strip())))

    return convert


def _value_options(info: Setting, hint: Any) -> dict[str, Any]:
    """``add_argument`` options for a field of type ``hint``: booleans get ``--x/--no-x``."""
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        return {"type": _items_converter(info), "action": "extend", "metavar": "NAME[,NAME...]"}
    optional = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    kind = optional[0] if typing.get_origin(hint) is types.UnionType else hint
    return {"type": _converter(info, kind), "choices": info.choices or None}


def _help(info: Setting, default: Any, required: bool) -> str:
    parts = [info.help or info.label]
    if info.bound is not None:
        parts.append(info.bound.describe() + (f" {info.unit}" if info.unit else ""))
    if info.choices and isinstance(default, tuple):
        parts.append(f"comma list or repeated, from {', '.join(info.choices)}")
    if not required and default is not None:
        parts.append(f"default: {','.join(default) or 'none' if isinstance(default, tuple) else default}")
    return "; ".join(parts).replace("%", "%%")


def add_spec_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """A flag for every field of the three specs, with its bound, choices and default."""
    add_section_arguments(parser, SPEC_SECTIONS, skip)
    parser.add_argument("--name", default="", help="a label for people; not part of the run's settings")
    parser.add_argument("--force", action="store_true", help="train again even if an equal run finished")
    parser.add_argument("--json", action="store_true")


def add_section_arguments(
    parser: argparse.ArgumentParser, sections: dict[str, type], skip: tuple[str, ...] = ()
) -> None:
    seen: set[str] = set()
    for section, spec_class in sections.items():
        hints, defaults = typing.get_type_hints(spec_class), spec_class()
        for name, info in settings(spec_class).items():
            key, flag = f"{section}.{name}", spec_flag(section, name)
            if key in skip or flag in seen:
                continue
            seen.add(flag)
            required = key in REQUIRED
            parser.add_argument(flag, *ALIASES.get(key, ()), dest=dest(section, name), default=None,
                                required=required, help=_help(info, getattr(defaults, name), required),
                                **_value_options(info, hints[name]))


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """The run the flags describe; a flag left out keeps the spec's default."""
    given = vars(args)
    parts = {}
    for section, spec_class in SPEC_SECTIONS.items():
        values = {name: given.get(dest(section, name)) for name in settings(spec_class)}
        parts[section] = spec_class(**{name: tuple(value) if isinstance(value, list) else value
                                       for name, value in values.items() if value is not None})
    weights = args.weights or ("none" if args.strategy == "scratch" else "imagenet")
    spec = RunSpec(dataset=parts["dataset"], backbone=dataclasses.replace(parts["backbone"], weights=weights),
                   train=parts["train"], name=args.name)
    return check_spec(spec.with_absolute_paths())  # a typed relative path means this folder
