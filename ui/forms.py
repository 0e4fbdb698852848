"""The Configure page's form sections: each draws its widgets and returns one spec part.

Every widget takes its value from the session, seeded from the matching field of a draft spec
when the widget has none yet (:func:`seeded`), so the form shows a saved or half-edited
experiment as it was. Widgets are never given ``value=`` or ``index=``: their identity is their
key, and a browser keeps showing its own value of a keyed widget unless the session tells it
otherwise, which is exactly what a seeded value does. :func:`load_into_form` relies on that.
Keys are namespaced ``configure.*``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from tlcore.backbones import CATALOGUE, KERAS_HUB_PRESETS, describe_kerashub_presets
from tlcore.backbones.catalogue import preset_cached
from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, setting
from tlcore.data import COMMON_TFDS, builtin_datasets
from tlcore.data.folder import folder_root
from tlcore.data.preview import DatasetPreview
from tlcore.data.uploads import MAX_ZIP_UPLOAD_BYTES, save_upload, source_label
from tlcore.errors import ConfigError, DatasetError, TLError
from tlcore.paths import data_roots, is_inside
from tlcore.report.plots import class_counts_figure
from ui import glue

PREFIX = "configure."
DRAFT = "configure.draft"
"""The spec the form starts from; written back after every run of the page."""
INLINE = "configure.inline"
"""Messages this run showed under their own field, so the page does not repeat them."""
SOURCES = {"builtin": "Built-in demo set", "tfds": "TensorFlow Datasets",
           "folder": "Folder on the server", "zip": "Upload a zip"}
WEIGHTS = {"imagenet": "ImageNet", "none": "None (random)", "file": "A file"}
FOLDER_HINT = ("Type the path of a folder on the server that holds one sub-folder of images per class. "
               "For an archive, choose “Upload a zip” above.")


def load_into_form(spec: RunSpec, keep: Sequence[str] = ()) -> None:
    """Make ``spec`` the draft and forget every form value, so each widget shows ``spec``.

    Call it before the form's widgets are drawn (a button callback, or before ``st.rerun``):
    the widgets then seed their values from ``spec`` and the browser is told each one.

    Args:
        spec: The experiment to show.
        keep: Session keys of the page to leave as they are (the experiment picker).
    """
    for key in [k for k in st.session_state if k.startswith(PREFIX) and k not in keep]:
        del st.session_state[key]
    st.session_state[DRAFT] = spec


def shown_inline() -> list[str]:
    """The messages shown under their fields in this run (:data:`INLINE`)."""
    return st.session_state.setdefault(INLINE, [])


def _say_inline(exc: TLError) -> None:
    glue.show_error(exc)
    shown_inline().append(exc.message)


def seeded(key: str, value: Any) -> str:
    """``key``, with ``value`` in the session unless the widget already has one there."""
    st.session_state.setdefault(key, value)
    return key


def option(options: Sequence[Any], current: Any) -> Any:
    """``current`` when it is one of ``options``, else the first option."""
    return current if current in list(options) else list(options)[0]


def limits(spec_class: type, name: str, kind: type = float) -> dict[str, Any]:
    """A slider's ``min_value``, ``max_value`` and ``step``, read from the field's bound in tlcore.config."""
    bound = setting(spec_class, name).bound
    limits = {"min_value": bound.form_min, "max_value": bound.form_max, "step": bound.step}
    return {key: kind(value) for key, value in limits.items() if value is not None}


def presets(spec_class: type, name: str, current: float) -> list[float]:
    """The values a pick-list offers for a field: its presets plus the current value."""
    return sorted({*setting(spec_class, name).bound.presets, current})


def choices(spec_class: type, name: str) -> tuple[str, ...]:
    return setting(spec_class, name).choices


def allowed(spec_class: type, name: str) -> str:
    """``Allowed: between 1 and 1000.``: a number field's range, from its bound in tlcore.config."""
    info = setting(spec_class, name)
    return f"Allowed: {info.bound.describe()}{f' {info.unit}' if info.unit else ''}."


def number_field(where: Any, label: str, key: str, spec_class: type, name: str, value: float | None,
                 **kwargs: Any) -> Any:
    """A number field whose value outside its allowed range is explained right under it.

    The widget itself has no minimum or maximum: a browser only turns a value outside them red,
    without a word, and never sends it. Here every value reaches the page and the field's check
    in tlcore.config says what is allowed; the spec keeps the draft's ``value`` meanwhile, so an
    impossible number never reaches it, and the page disables Save while :func:`shown_inline`
    lists a message.
    """
    info = setting(spec_class, name)
    tip = " ".join(filter(None, [kwargs.pop("help", ""), allowed(spec_class, name)]))
    number = where.number_input(label, key=seeded(key, value), step=int(info.bound.step or 1), help=tip,
                                **kwargs)
    if not kwargs.get("disabled"):
        try:
            info.check(number)
        except ConfigError as exc:
            with where:
                _say_inline(exc)
            return value
    return number


def location_problem(d: DatasetSpec) -> TLError | None:
    """Why the typed folder cannot be a dataset, found as it is typed (a stat, not a listing).

    An unusable path or one outside the data roots keeps tlcore's words; a folder that is
    missing, or a file, gets the app's hint, which points to the upload instead of the CLI's
    ``zip:`` syntax.
    """
    if d.kind != "folder" or not d.location.strip():
        return None
    try:
        folder_root(d, data_roots())
    except TLError as exc:
        try:
            inside = is_inside(Path(d.location).expanduser().resolve(), data_roots())
        except (OSError, RuntimeError, ValueError):
            inside = False
        return DatasetError(exc.message, FOLDER_HINT) if inside else exc
    return None


def _source(d: DatasetSpec) -> tuple[str, str | None]:
    kind = st.radio("Source", list(SOURCES), format_func=SOURCES.get, horizontal=True,
                    key=seeded("configure.kind", option(list(SOURCES), d.kind)))
    location = d.location if d.kind == kind else ""
    if kind == "builtin":
        builtins = builtin_datasets()
        name = st.selectbox("Dataset", list(builtins), format_func=lambda n: f"{n} — {builtins[n]}",
                            key=seeded("configure.builtin", option(list(builtins), location)))
        return f"builtin:{name}", None
    if kind == "tfds":
        options = list(COMMON_TFDS) + ([location] if location and location not in COMMON_TFDS else [])
        name = st.selectbox("TFDS dataset (pick one or type any name)", options, accept_new_options=True,
                            key=seeded("configure.tfds", option(options, location)))
        data_dir = st.text_input("TFDS data_dir (optional; prepared data there works offline)",
                                 key=seeded("configure.data_dir", d.data_dir or ""))
        return f"tfds:{name or ''}", data_dir.strip() or None
    if kind == "folder":
        folder = st.text_input("Folder on the server with one sub-folder of images per class",
                               key=seeded("configure.folder", location))
        source = f"folder:{folder.strip()}"
        problem = location_problem(dataclasses.replace(d, source=source))
        if problem is not None:
            _say_inline(problem)
        return source, None
    return _upload(d.source if d.kind == kind else "zip:"), None


def _upload(source: str) -> str:
    """The uploaded zip as a ``zip:PATH`` source, named to the user by its uploaded name."""
    upload = st.file_uploader("Zip of class folders (one folder of images per class)", type=["zip"],
                              max_upload_size=MAX_ZIP_UPLOAD_BYTES // 2**20, key="configure.zip")
    if upload is not None:
        saved = glue.attempt(save_upload, upload.getvalue(), upload.name, doing="saving the upload")
        source = f"zip:{saved}" if saved else "zip:"
    st.caption(f"Using the uploaded archive **{source_label(source)}**." if source != "zip:"
               else "Upload a zip to use it.")
    return source


def dataset_form(d: DatasetSpec) -> DatasetSpec:
    """Source, subset, image size, split shares and seed; the first section, so it starts the run's
    list of messages shown under their fields."""
    st.session_state[INLINE] = []
    source, data_dir = _source(d)
    cols = st.columns(5)
    subset = cols[0].slider("Share of images used", key=seeded("configure.subset", d.subset),
                            **limits(DatasetSpec, "subset"))
    size = number_field(cols[1], "Image size (px)", "configure.image_size", DatasetSpec, "image_size",
                        int(d.image_size))
    val = cols[2].slider("Validation share", key=seeded("configure.val", d.val_fraction),
                         **limits(DatasetSpec, "val_fraction"))
    test = cols[3].slider("Test share", key=seeded("configure.test", d.test_fraction),
                          **limits(DatasetSpec, "test_fraction"))
    seed = number_field(cols[4], "Seed (splits, training)", "configure.seed", DatasetSpec, "seed",
                        int(d.seed))
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


CATALOGUE_COLUMNS = {
    "title": "backbone", "params": st.column_config.NumberColumn("parameters", format="compact"),
    "top1": st.column_config.NumberColumn("ImageNet top-1 %"), "default_size": "input size",
    "alphas": st.column_config.ListColumn("widths (α)"),
    "on_disk": st.column_config.TextColumn("ImageNet weights on disk", width="large"),
}


def catalogue_table() -> None:
    """The catalogue with, per backbone, the widths and sizes whose weights are on this server."""
    rows = glue.catalogue_rows()
    table = pd.DataFrame(rows)[list(CATALOGUE_COLUMNS)]
    st.dataframe(table, hide_index=True, column_config=CATALOGUE_COLUMNS)
    rule = next((row["size_rule"] for row in rows if row["size_rule"]), "")
    st.caption(f"MobileNet and MobileNetV2 weights: {rule}." if rule else "")


def _keras_application(cols: Sequence[Any], b: BackboneSpec) -> tuple[str, float | None]:
    """The catalogue pick-list and, for families with one, the width multiplier."""
    name = cols[0].selectbox("Keras application", list(CATALOGUE), format_func=lambda n: CATALOGUE[n].title,
                            key=seeded("configure.backbone", option(list(CATALOGUE), b.name)))
    info = CATALOGUE[name]
    if not info.alphas:
        return name, None
    current = b.alpha if b.name == name and b.alpha in info.alphas else info.default_alpha
    alpha = cols[1].selectbox("Width multiplier (alpha)", info.alphas,
                             key=seeded(f"configure.alpha.{name}", current))
    return name, alpha


KERAS_HUB_COLUMNS = {
    "name": "backbone name", "title": "preset",
    "params": st.column_config.NumberColumn("parameters", format="compact"),
    "default_size": "trained at (px)",
    "download": st.column_config.TextColumn("on this server", width="large"),
}
KERAS_HUB_WEIGHTS = {"imagenet": "The preset's own", "none": "None (random)"}
OTHER_PRESET = "other"
"""The pick-list entry for a preset keras-hub has but the table does not list, or a folder."""


@st.cache_data(ttl=60, show_spinner=False)
def _kerashub_rows(cache: str) -> list[dict]:
    del cache  # part of the key only
    return describe_kerashub_presets()


def kerashub_table() -> None:
    """The listed keras-hub presets, saying which are cached here and which need a download."""
    rows = _kerashub_rows(os.environ.get("KAGGLEHUB_CACHE", ""))
    st.markdown("**keras-hub presets** (`kerashub:NAME`, or `kerashub:/path/to/folder` for a saved preset)")
    st.dataframe(pd.DataFrame(rows)[list(KERAS_HUB_COLUMNS)], hide_index=True,
                 column_config=KERAS_HUB_COLUMNS)
    st.caption("A preset that needs a download cannot be fetched without internet: fetch it elsewhere, "
               "copy its folder to this server and give the folder (docs/backbones.md says how).")


def _kerashub_preset(cols: Sequence[Any], b: BackboneSpec) -> str:
    """A listed preset, or another preset's name or folder; returns the ``kerashub:`` name."""
    handle = b.kerashub_handle
    choices = [*KERAS_HUB_PRESETS, OTHER_PRESET]
    current = handle if handle in KERAS_HUB_PRESETS else (OTHER_PRESET if handle else choices[0])
    titles = {name: preset.title for name, preset in KERAS_HUB_PRESETS.items()}
    picked = cols[0].selectbox("keras-hub preset", choices, key=seeded("configure.kerashub", current),
                               format_func=lambda n: titles.get(n, "Another name or a folder"))
    if picked == OTHER_PRESET:
        typed = cols[0].text_input("Preset name, or the full path of a folder saved with save_to_preset",
                                   key=seeded("configure.kerashub_other",
                                               "" if handle in KERAS_HUB_PRESETS else handle))
        return f"kerashub:{typed.strip()}"
    preset = KERAS_HUB_PRESETS[picked]
    where = ("in kagglehub's cache: loads offline" if preset_cached(preset.handle)
             else "not on this server: it needs a download, or its folder copied here")
    st.caption(f"{preset.title}: {preset.params / 1e6:.1f} M parameters, trained at {preset.default_size} "
               f"px, {where}. {preset.notes}")
    return f"kerashub:{picked}"


def backbone_form(b: BackboneSpec) -> BackboneSpec:
    """Catalogue tables, Keras application (and alpha), keras-hub preset or TF Hub handle, and weights."""
    with st.expander("Backbone catalogue"):
        catalogue_table()
        kerashub_table()
    use_kerashub = st.toggle("Use a keras-hub preset (ResNet, EfficientNet, ViT, Swin, ...)",
                             key=seeded("configure.use_kerashub", b.is_kerashub))
    use_hub = not use_kerashub and st.toggle("Use a TF Hub model instead of a Keras application",
                                             key=seeded("configure.use_hub", b.is_hub))
    cols = st.columns([2, 1, 2])
    if use_kerashub:
        name = _kerashub_preset(cols, b)
        weights = cols[2].radio("Weights", list(KERAS_HUB_WEIGHTS), format_func=KERAS_HUB_WEIGHTS.get,
                                horizontal=True, key=seeded("configure.kerashub_weights",
                                                            option(list(KERAS_HUB_WEIGHTS), b.weights)))
        return dataclasses.replace(b, name=name, alpha=None, weights=weights)
    alpha, info = None, None
    if use_hub:
        handle = cols[0].text_input("TF Hub handle (URL) or local SavedModel folder",
                                    key=seeded("configure.hub", b.name[4:] if b.is_hub else ""))
        name = f"hub:{handle.strip()}"
    else:
        name, alpha = _keras_application(cols, b)
        info = CATALOGUE[name]
    mode = cols[2].radio("Weights", list(WEIGHTS), format_func=WEIGHTS.get, horizontal=True,
                         key=seeded("configure.weights", b.weights if b.weights in WEIGHTS else "file"))
    if info is not None:
        st.caption(f"{info.title}: {info.params / 1e6:.1f} M parameters, ImageNet top-1 {info.top1:.1f} %, "
                   f"trained at {info.default_size} px. {info.notes}")
    weights = mode
    if mode == "file":
        weights = st.text_input("Weights file on the server",
                                key=seeded("configure.weights_path",
                                            "" if b.weights in WEIGHTS else b.weights)).strip()
    return dataclasses.replace(b, name=name, alpha=alpha, weights=weights)
