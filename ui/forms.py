"""The Configure page's form sections: each draws its widgets and returns one spec part.

Every widget starts from the matching field of a draft spec, so the form shows a saved or
half-edited experiment as it was. Keys are namespaced ``configure.*``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from tlcore.backbones import CATALOGUE
from tlcore.config import BackboneSpec, DatasetSpec, TrainSpec, setting
from tlcore.data import COMMON_TFDS, builtin_datasets
from tlcore.data.preview import DatasetPreview
from tlcore.data.uploads import MAX_ZIP_UPLOAD_BYTES, save_upload
from tlcore.report.plots import class_counts_figure
from ui import glue

SOURCES = {"builtin": "Built-in demo set", "tfds": "TensorFlow Datasets",
           "folder": "Folder on the server", "zip": "Upload a zip"}
WEIGHTS = {"imagenet": "ImageNet", "none": "None (random)", "file": "A file"}
STRATEGY_HELP = {"scratch": "random weights, train everything", "frozen": "train only the new head",
                 "finetune": "train the head and the top of the backbone",
                 "frozen_then_finetune": "head first, then fine-tune at a lower rate"}


def _limits(spec_class: type, name: str, kind: type = float) -> dict[str, Any]:
    """A widget's ``min_value``, ``max_value`` and ``step``, read from the field's bound in tlcore.config."""
    bound = setting(spec_class, name).bound
    limits = {"min_value": bound.form_min, "max_value": bound.form_max, "step": bound.step}
    return {key: kind(value) for key, value in limits.items() if value is not None}


def _presets(spec_class: type, name: str, current: float) -> list[float]:
    """The values a pick-list offers for a field: its presets plus the current value."""
    return sorted({*setting(spec_class, name).bound.presets, current})


def _choices(spec_class: type, name: str) -> tuple[str, ...]:
    return setting(spec_class, name).choices


def _index(options: Sequence[Any] | dict, current: Any) -> int:
    options = list(options)
    return options.index(current) if current in options else 0


def _source(d: DatasetSpec) -> tuple[str, str | None]:
    kind = st.radio("Source", list(SOURCES), format_func=SOURCES.get, index=_index(SOURCES, d.kind),
                    horizontal=True, key="configure.kind")
    same_kind = d.kind == kind
    if kind == "builtin":
        builtins = builtin_datasets()
        name = st.selectbox("Dataset", list(builtins), index=_index(builtins, d.location),
                            format_func=lambda n: f"{n} — {builtins[n]}", key="configure.builtin")
        return f"builtin:{name}", None
    if kind == "tfds":
        options = list(COMMON_TFDS) + ([d.location] if same_kind and d.location not in COMMON_TFDS else [])
        name = st.selectbox("TFDS dataset (pick one or type any name)", options, accept_new_options=True,
                            index=_index(options, d.location), key="configure.tfds")
        data_dir = st.text_input("TFDS data_dir (optional; prepared data there works offline)",
                                 value=d.data_dir or "", key="configure.data_dir")
        return f"tfds:{name or ''}", data_dir.strip() or None
    if kind == "folder":
        folder = st.text_input("Folder on the server with one sub-folder of images per class",
                               value=d.location if same_kind else "", key="configure.folder")
        return f"folder:{folder.strip()}", None
    upload = st.file_uploader("Zip of class folders (one folder of images per class)", type=["zip"],
                              max_upload_size=MAX_ZIP_UPLOAD_BYTES // 2**20, key="configure.zip")
    source = d.source if same_kind else "zip:"
    if upload is not None:
        saved = glue.attempt(save_upload, upload.getvalue(), upload.name, doing="saving the upload")
        source = f"zip:{saved}" if saved else "zip:"
    st.caption(f"Using the uploaded archive `{source[4:]}`." if source != "zip:"
               else "Upload a zip to use it.")
    return source, None


def dataset_form(d: DatasetSpec) -> DatasetSpec:
    """Source, subset, image size, split shares and seed."""
    source, data_dir = _source(d)
    cols = st.columns(5)
    subset = cols[0].slider("Share of images used", value=d.subset, key="configure.subset",
                            **_limits(DatasetSpec, "subset"))
    size = cols[1].number_input("Image size (px)", value=d.image_size, key="configure.image_size",
                                **_limits(DatasetSpec, "image_size", int))
    val = cols[2].slider("Validation share", value=d.val_fraction, key="configure.val",
                         **_limits(DatasetSpec, "val_fraction"))
    test = cols[3].slider("Test share", value=d.test_fraction, key="configure.test",
                          **_limits(DatasetSpec, "test_fraction"))
    seed = cols[4].number_input("Seed (splits, training)", value=d.seed, key="configure.seed",
                                **_limits(DatasetSpec, "seed", int))
    return dataclasses.replace(d, source=source, subset=subset, image_size=int(size), val_fraction=val,
                               test_fraction=test, seed=int(seed), data_dir=data_dir)


def preview_view(preview: DatasetPreview) -> None:
    """Sample images per class, counts per split, warnings and skipped files."""
    st.markdown(f"**{len(preview.class_names)} classes, {preview.total_images} images** "
                f"({preview.train_images} for training)")
    for warning in preview.warnings:
        st.warning(warning, icon=":material/warning:")
    grid = st.columns(min(len(preview.samples), 5) or 1)
    for i, (class_name, images) in enumerate(preview.samples.items()):
        with grid[i % len(grid)]:
            st.markdown(f"**{class_name}**")
            st.image(images, width=64)
    st.plotly_chart(class_counts_figure(preview.counts), key="configure.counts")
    if preview.skipped:
        with st.expander(f"{len(preview.skipped)} skipped file(s)"):
            st.dataframe(pd.DataFrame([vars(s) for s in preview.skipped]), hide_index=True)


def backbone_form(b: BackboneSpec) -> BackboneSpec:
    """Catalogue table, Keras application (and alpha) or TF Hub handle, and weights."""
    with st.expander("Backbone catalogue"):
        st.dataframe(pd.DataFrame(glue.catalogue_rows()), hide_index=True, column_config={
            "params": st.column_config.NumberColumn("parameters", format="compact"),
            "top1": st.column_config.NumberColumn("ImageNet top-1 %"),
            "default_size": "input size", "weights_on_disk": "weights on disk"})
    use_hub = st.toggle("Use a TF Hub model instead of a Keras application", value=b.is_hub,
                        key="configure.use_hub")
    name_col, alpha_col, weights_col = st.columns([2, 1, 2])
    alpha, info = None, None
    if use_hub:
        handle = name_col.text_input("TF Hub handle (URL) or local SavedModel folder",
                                     value=b.name[4:] if b.is_hub else "", key="configure.hub")
        name = f"hub:{handle.strip()}"
    else:
        name = name_col.selectbox("Keras application", list(CATALOGUE), index=_index(CATALOGUE, b.name),
                                  format_func=lambda n: CATALOGUE[n].title, key="configure.backbone")
        info = CATALOGUE[name]
        if info.alphas:
            alpha = alpha_col.selectbox("Width multiplier (alpha)", info.alphas,
                                        key=f"configure.alpha.{name}",
                                        index=_index(info.alphas, b.alpha or info.default_alpha))
    mode = weights_col.radio("Weights", list(WEIGHTS), format_func=WEIGHTS.get, horizontal=True,
                             index=_index(WEIGHTS, b.weights if b.weights in WEIGHTS else "file"),
                             key="configure.weights")
    if info is not None:
        st.caption(f"{info.title}: {info.params / 1e6:.1f} M parameters, ImageNet top-1 {info.top1:.1f} %, "
                   f"trained at {info.default_size} px. {info.notes}")
    weights = mode
    if mode == "file":
        weights = st.text_input("Weights file on the server", key="configure.weights_path",
                                value="" if b.weights in WEIGHTS else b.weights).strip()
    return dataclasses.replace(b, name=name, alpha=alpha, weights=weights)


def _stages(t: TrainSpec) -> dict[str, Any]:
    """Strategy, epochs and how much of the backbone fine-tunes (enabled only where it applies)."""
    strategies = _choices(TrainSpec, "strategy")
    strategy = st.radio("Strategy", strategies, index=_index(strategies, t.strategy), horizontal=True,
                        format_func=lambda s: f"{s} ({STRATEGY_HELP[s]})", key="configure.strategy")
    tunes = strategy in ("finetune", "frozen_then_finetune")
    c = st.columns(4)
    epochs = c[0].number_input("Epochs", value=t.epochs, key="configure.epochs",
                               **_limits(TrainSpec, "epochs", int))
    ft_epochs = c[1].number_input("Fine-tune epochs (second stage)", value=t.fine_tune_epochs,
                                  key="configure.ft_epochs", disabled=strategy != "frozen_then_finetune",
                                  **_limits(TrainSpec, "fine_tune_epochs", int))
    ft_layers = c[2].number_input("Fine-tune layers", value=t.fine_tune_layers,
                                  key="configure.ft_layers", disabled=not tunes,
                                  help="Empty: unfreeze the share of layers set on the right.",
                                  **_limits(TrainSpec, "fine_tune_layers", int))
    ft_fraction = c[3].slider("Share of backbone layers fine-tuned", value=t.fine_tune_fraction,
                              key="configure.ft_fraction", disabled=not tunes,
                              **_limits(TrainSpec, "fine_tune_fraction"))
    return {"strategy": strategy, "epochs": int(epochs), "fine_tune_epochs": int(ft_epochs),
            "fine_tune_layers": int(ft_layers) if ft_layers else None, "fine_tune_fraction": ft_fraction}


def _optimisation(t: TrainSpec, tunes: bool) -> dict[str, Any]:
    """Learning rates, batch size and optimizer, offered from the presets in tlcore.config."""
    c = st.columns(4)
    lr = c[0].select_slider("Learning rate", _presets(TrainSpec, "learning_rate", t.learning_rate),
                            t.learning_rate, format_func=lambda v: f"{v:g}", key="configure.lr")
    ft_lr = c[1].select_slider("Fine-tune learning rate",
                               _presets(TrainSpec, "fine_tune_learning_rate", t.fine_tune_learning_rate),
                               t.fine_tune_learning_rate, format_func=lambda v: f"{v:g}",
                               key="configure.ft_lr", disabled=not tunes)
    sizes = _presets(TrainSpec, "batch_size", t.batch_size)
    batch = c[2].selectbox("Batch size", sizes, index=_index(sizes, t.batch_size), key="configure.batch")
    optimizers = _choices(TrainSpec, "optimizer")
    optimizer = c[3].selectbox("Optimizer", optimizers, index=_index(optimizers, t.optimizer),
                               key="configure.optimizer")
    return {"learning_rate": lr, "fine_tune_learning_rate": ft_lr, "batch_size": int(batch),
            "optimizer": optimizer}


def _regularisation(t: TrainSpec) -> dict[str, Any]:
    """Label smoothing, dropout, early stopping, class weights, augmentation and the feature cache."""
    c = st.columns(4)
    smoothing = c[0].slider("Label smoothing", value=t.label_smoothing, key="configure.smoothing",
                            **_limits(TrainSpec, "label_smoothing"))
    dropout = c[1].slider("Dropout", value=t.dropout, key="configure.dropout",
                          **_limits(TrainSpec, "dropout"))
    patience = c[2].number_input("Early-stopping patience (0: off)", value=t.early_stopping_patience,
                                 key="configure.patience",
                                 **_limits(TrainSpec, "early_stopping_patience", int))
    class_weights = c[3].toggle("Class weights (for imbalance)", t.class_weights,
                                key="configure.class_weights")
    c = st.columns([2, 1, 1], vertical_alignment="bottom")
    augmentations = c[0].multiselect("Augmentations (training only)", _choices(TrainSpec, "augmentations"),
                                     list(t.augmentations), key="configure.augment")
    feature_cache = c[1].toggle("Cache frozen features", t.feature_cache, key="configure.feature_cache",
                                help="Run the frozen part once per image instead of every epoch: "
                                     "same result, much faster.")
    views = c[2].number_input("Augmented views per image", value=t.augment_views, key="configure.views",
                              disabled=not (augmentations and feature_cache),
                              help="With augmentations and the cache: views precomputed per image "
                                   "(0 augments on the fly, without the cache).",
                              **_limits(TrainSpec, "augment_views", int))
    return {"label_smoothing": smoothing, "dropout": dropout, "early_stopping_patience": int(patience),
            "class_weights": class_weights, "augmentations": tuple(augmentations),
            "feature_cache": feature_cache, "augment_views": int(views)}


def training_form(t: TrainSpec, seed: int) -> TrainSpec:
    """Strategy and hyperparameters; fine-tune settings are enabled only where they apply."""
    stages = _stages(t)
    tunes = stages["strategy"] in ("finetune", "frozen_then_finetune")
    return dataclasses.replace(t, **stages, **_optimisation(t, tunes), **_regularisation(t), seed=seed)
