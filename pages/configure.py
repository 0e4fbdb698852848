"""Configure: dataset, backbone, strategy and hyperparameters -> a named experiment.

Widgets start from a draft spec kept in the session, so edits survive visits to other pages.
"""

import dataclasses

import streamlit as st

from tlcore.config import RunSpec
from tlcore.runs.checks import spec_problems, spec_warnings
from tlcore.runs.experiments import list_experiments, load_experiment, save_experiment
from tlcore.training.estimate import (
    augmentation_costs,
    estimate_basis,
    estimate_epoch_seconds,
    estimate_run_seconds,
    format_seconds,
)
from ui import forms, glue, widgets

glue.require_frame(__file__)

DRAFT = "configure.draft"

st.title("Configure")
names = glue.attempt(list_experiments) or []
if names:
    start_col, load_col = st.columns([4, 1], vertical_alignment="bottom")
    start = start_col.selectbox("Start from a saved experiment", names, key="configure.start")
    if load_col.button("Load", icon=":material/upload_file:", key="configure.load"):
        st.session_state[DRAFT] = glue.attempt(load_experiment, start)
        for key in [k for k in st.session_state if k.startswith("configure.") and k != DRAFT]:
            del st.session_state[key]  # widgets take their values from the loaded draft
        st.rerun()
draft: RunSpec = st.session_state.get(DRAFT) or glue.current_spec()

st.subheader("1 · Dataset")
dataset = forms.dataset_form(draft.dataset)
if st.button("Preview dataset", icon=":material/visibility:", key="configure.preview"):
    st.session_state["configure.previewed"] = dataset
preview = None
if st.session_state.get("configure.previewed") == dataset:
    preview = glue.attempt(glue.dataset_preview, dataset, doing="loading the dataset")
elif st.session_state.get("configure.previewed"):
    st.caption("The dataset settings changed since the last preview; preview again to see them.")
if preview is not None:
    forms.preview_view(preview)

st.subheader("2 · Backbone")
backbone = forms.backbone_form(draft.backbone)

st.subheader("3 · Strategy and hyperparameters")
train = forms.training_form(draft.train, dataset.seed)
if train.strategy == "scratch":
    backbone = dataclasses.replace(backbone, weights="none")
    st.caption("Training from scratch starts from random weights, whatever the weights choice above.")
spec = RunSpec(dataset, backbone, train, name=draft.name)
st.session_state[DRAFT] = spec

problems = glue.attempt(spec_problems, spec, doing="checking the settings")
for problem in problems or []:
    glue.show_error(problem)
for warning in glue.attempt(spec_warnings, spec) or []:
    st.warning(warning, icon=":material/warning:")
if problems == []:
    images = preview.train_images if preview else 1000
    server = glue.server_profile()
    cols = st.columns(3)
    cols[0].metric("Time per epoch (estimate)", format_seconds(estimate_epoch_seconds(spec, images, server)))
    cols[1].metric(f"Whole run, {train.total_epochs} epoch(s)",
                   format_seconds(estimate_run_seconds(spec, images, server)))
    cols[2].caption(f"{estimate_basis(spec, server)}; {images:,} training images"
                    + ("." if preview else " (preview the dataset to use its real size)."))
    if train.augmentations and train.strategy != "scratch":
        st.caption(augmentation_costs(spec, images, server=server))

st.subheader("4 · Save")
name = st.text_input("Experiment name", value=draft.name, key="configure.name",
                     placeholder="e.g. shapes-frozen")
if problems != []:
    st.caption("Fix the settings marked above to save.")
elif not name.strip():
    st.caption("Give the experiment a name to save it.")
if st.button("Save experiment", type="primary", icon=":material/save:", key="configure.save",
             disabled=problems != [] or not name.strip()):
    saved = glue.attempt(save_experiment, name, spec, doing="saving the experiment")
    if saved is not None:
        st.session_state[glue.CURRENT_EXPERIMENT] = saved.name
        st.session_state[DRAFT] = saved
        st.success(f"Saved “{saved.name}”. It is now the current experiment.", icon=":material/check:")
        st.page_link(widgets.TRAIN_PAGE, label="Train it now", icon=":material/monitoring:")
