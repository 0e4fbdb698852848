"""The Configure page's training section: strategy, how deep to fine-tune, rates and their
schedules, regularisation and class balance. Widgets follow :mod:`ui.forms`' rules (keyed,
seeded from the draft, limits read from ``tlcore.config``)."""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from tlcore.config import FINE_TUNING, BackboneSpec, TrainSpec
from ui import glue
from ui.forms import choices, limits, number_field, option, presets, seeded

STRATEGY_HELP = {"scratch": "random weights, train everything", "frozen": "train only the new head",
                 "finetune": "train the head and the top of the backbone",
                 "frozen_then_finetune": "head first, then fine-tune at a lower rate",
                 "auto": "search the head on cached features, then fine-tune the top blocks"}
SCHEDULE_WORDS = {"constant": "constant", "cosine": "cosine with warm-up", "one_cycle": "one-cycle"}


def _strategy(t: TrainSpec) -> str:
    strategies = choices(TrainSpec, "strategy")
    return st.radio("Strategy", strategies, horizontal=True,
                    format_func=lambda s: f"{s} ({STRATEGY_HELP.get(s, s)})",
                    key=seeded("configure.strategy", option(strategies, t.strategy)))


def _epochs(t: TrainSpec, strategy: str) -> dict[str, Any]:
    c = st.columns(3)
    epochs = number_field(c[0], "Epochs", "configure.epochs", TrainSpec, "epochs", t.epochs)
    second = strategy in ("frozen_then_finetune", "auto")
    ft_epochs = number_field(c[1], "Fine-tune epochs (second stage)", "configure.ft_epochs", TrainSpec,
                             "fine_tune_epochs", t.fine_tune_epochs, disabled=not second)
    budget = number_field(c[2], "Head-search budget (s)", "configure.search_budget", TrainSpec,
                          "search_budget_seconds", t.search_budget_seconds, disabled=strategy != "auto",
                          help="The auto strategy searches the head's settings on cached features "
                               "for this long.")
    return {"epochs": int(epochs), "fine_tune_epochs": int(ft_epochs), "search_budget_seconds": int(budget)}


def _depth(t: TrainSpec, tunes: bool, backbone: BackboneSpec, image_size: int) -> dict[str, Any]:
    """Whole blocks unfrozen from the top, with the trainable parameters they hold; raw layer
    counts and shares for experts, and for backbones without known blocks (TF Hub)."""
    blocks = glue.backbone_blocks(backbone, image_size) if tunes else []
    by_blocks = bool(blocks) and st.toggle(
        "Unfreeze whole blocks", disabled=not tunes,
        key=seeded("configure.by_blocks", t.fine_tune_blocks is not None or t.fine_tune_layers is None),
        help="Blocks are the backbone's own units (MobileNetV2's inverted residuals, ResNet's "
             "bottlenecks): unfreezing by blocks never cuts one in half.")
    chosen: int | None = None
    if by_blocks:
        default = t.fine_tune_blocks or max(1, math.ceil(len(blocks) * t.fine_tune_fraction))
        chosen = st.slider("Top blocks unfrozen", 1, len(blocks), key=seeded("configure.ft_blocks",
                                                                                min(default, len(blocks))))
        top = blocks[-chosen:]
        params = sum(block.params for block in top)
        st.caption(f"{params:,} backbone parameters train in {chosen} block(s): "
                   f"{', '.join(block.name for block in reversed(top[-6:]))}"
                   + (" …" if chosen > 6 else "") + ", plus the head.")
    with st.expander("Fine-tune by raw layers (experts)", expanded=tunes and not by_blocks and not blocks):
        c = st.columns(2)
        layers = number_field(c[0], "Fine-tune layers", "configure.ft_layers", TrainSpec, "fine_tune_layers",
                              t.fine_tune_layers, disabled=not tunes or by_blocks,
                              help="Empty: unfreeze the share of layers set on the right.")
        fraction = c[1].slider("Share of backbone layers fine-tuned", disabled=not tunes or by_blocks,
                               key=seeded("configure.ft_fraction", t.fine_tune_fraction),
                               **limits(TrainSpec, "fine_tune_fraction"))
    return {"fine_tune_blocks": chosen, "fine_tune_layers": int(layers) if layers and not by_blocks else None,
            "fine_tune_fraction": fraction}


def _rates(t: TrainSpec, tunes: bool) -> dict[str, Any]:
    """Learning rates, batch size and optimizer, offered from the presets in tlcore.config."""
    c = st.columns(4)
    lr = c[0].select_slider("Learning rate", presets(TrainSpec, "learning_rate", t.learning_rate),
                            format_func=lambda v: f"{v:g}", key=seeded("configure.lr", t.learning_rate))
    ft_lr = c[1].select_slider("Fine-tune learning rate",
                               presets(TrainSpec, "fine_tune_learning_rate", t.fine_tune_learning_rate),
                               format_func=lambda v: f"{v:g}", disabled=not tunes,
                               key=seeded("configure.ft_lr", t.fine_tune_learning_rate))
    batch = c[2].selectbox("Batch size", presets(TrainSpec, "batch_size", t.batch_size),
                           key=seeded("configure.batch", t.batch_size))
    optimizers = choices(TrainSpec, "optimizer")
    optimizer = c[3].selectbox("Optimizer", optimizers,
                               key=seeded("configure.optimizer", option(optimizers, t.optimizer)))
    return {"learning_rate": lr, "fine_tune_learning_rate": ft_lr, "batch_size": int(batch),
            "optimizer": optimizer}


def _schedules(t: TrainSpec, tunes: bool) -> dict[str, Any]:
    """How each stage's rate moves over its steps, and how the unfrozen blocks share it."""
    kinds = choices(TrainSpec, "schedule")
    c = st.columns(4)
    schedule = c[0].selectbox("Schedule (head)", kinds, format_func=SCHEDULE_WORDS.get,
                              key=seeded("configure.schedule", option(kinds, t.schedule)))
    ft_schedule = c[1].selectbox("Schedule (fine-tuning)", kinds, format_func=SCHEDULE_WORDS.get,
                                 disabled=not tunes,
                                 key=seeded("configure.ft_schedule", option(kinds, t.fine_tune_schedule)))
    warmup = c[2].slider("Warm-up share (cosine)", key=seeded("configure.warmup", t.warmup_fraction),
                         disabled="cosine" not in (schedule, ft_schedule),
                         **limits(TrainSpec, "warmup_fraction"))
    floor = c[3].select_slider("Lowest block's share of the rate", [0.01, 0.03, 0.1, 0.3, 1.0],
                               format_func=lambda v: "one rate for all" if v == 1 else f"{v:g}×",
                               disabled=not tunes,
                               key=seeded("configure.floor", option([0.01, 0.03, 0.1, 0.3, 1.0],
                                                                    t.discriminative_floor)),
                               help="Discriminative rates: the head trains at the fine-tune rate, each "
                                    "block below at a geometrically lower one, down to this share "
                                    "(0.01 is fastai's slice(lr/100, lr)).")
    return {"schedule": schedule, "fine_tune_schedule": ft_schedule, "warmup_fraction": warmup,
            "discriminative_floor": floor}


def _regularisation(t: TrainSpec) -> dict[str, Any]:
    """Label smoothing, dropout, weight decay, a hidden layer, early stopping and class balance."""
    c = st.columns(4)
    smoothing = c[0].slider("Label smoothing", key=seeded("configure.smoothing", t.label_smoothing),
                            **limits(TrainSpec, "label_smoothing"))
    dropout = c[1].slider("Dropout", key=seeded("configure.dropout", t.dropout),
                          **limits(TrainSpec, "dropout"))
    decay = c[2].select_slider("Weight decay", sorted({0.0, 1e-5, 1e-4, 1e-3, 1e-2, t.weight_decay}),
                               format_func=lambda v: "off" if v == 0 else f"{v:g}",
                               key=seeded("configure.weight_decay", t.weight_decay))
    hidden = c[3].selectbox("Hidden layer", sorted({0, 128, 256, 512, t.head_hidden_units}),
                            format_func=lambda v: "none" if v == 0 else f"{v} ReLU units",
                            key=seeded("configure.hidden", t.head_hidden_units))
    c = st.columns(3)
    patience = number_field(c[0], "Early-stopping patience (0: off)", "configure.patience", TrainSpec,
                            "early_stopping_patience", t.early_stopping_patience)
    class_weights = c[1].toggle("Class weights (for imbalance)",
                                key=seeded("configure.class_weights", t.class_weights))
    oversample = c[2].toggle("Oversample small classes", key=seeded("configure.oversample", t.oversample),
                             help="Draw images of small classes more often, so each class is seen about "
                                  "equally often per epoch.")
    return {"label_smoothing": smoothing, "dropout": dropout, "weight_decay": decay,
            "head_hidden_units": int(hidden), "early_stopping_patience": int(patience),
            "class_weights": class_weights, "oversample": oversample}


def _augmentation(t: TrainSpec) -> dict[str, Any]:
    c = st.columns([2, 1, 1], vertical_alignment="bottom")
    augmentations = c[0].multiselect("Augmentations (training only)", choices(TrainSpec, "augmentations"),
                                     key=seeded("configure.augment", list(t.augmentations)))
    feature_cache = c[1].toggle("Cache frozen features",
                                key=seeded("configure.feature_cache", t.feature_cache),
                                help="Run the frozen part once per image instead of every epoch: "
                                     "same result, much faster.")
    views = number_field(c[2], "Augmented views per image", "configure.views", TrainSpec, "augment_views",
                         t.augment_views, disabled=not (augmentations and feature_cache),
                         help="With augmentations and the cache: views precomputed per image "
                              "(0 augments on the fly, without the cache).")
    return {"augmentations": tuple(augmentations), "feature_cache": feature_cache,
            "augment_views": int(views)}


def training_form(t: TrainSpec, seed: int, backbone: BackboneSpec, image_size: int) -> TrainSpec:
    """Strategy and hyperparameters; fine-tune settings are enabled only where they apply."""
    strategy = _strategy(t)
    tunes = strategy in FINE_TUNING
    fields = {"strategy": strategy, **_epochs(t, strategy), **_depth(t, tunes, backbone, image_size)}
    fields |= _rates(t, tunes) | _schedules(t, tunes) | _regularisation(t) | _augmentation(t)
    return TrainSpec(**{**t.__dict__, **fields, "seed": seed})
