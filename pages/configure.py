"""Configure: dataset, backbone, strategy and hyperparameters -> a named experiment.

Widgets start from a draft spec kept in the session, so edits survive visits to other pages;
Load puts a saved experiment in every widget (see ui.forms).
"""

import dataclasses

import streamlit as st

from tlcore.config import RunSpec
from tlcore.runs.auditing import latest_audit_for_data
from tlcore.runs.checks import spec_problems, spec_warnings
from tlcore.runs.experiments import list_experiments, load_experiment, save_experiment
from tlcore.training.estimate import (
    augmentation_costs,
    estimate_basis,
    estimate_epoch_seconds,
    estimate_run_seconds,
    format_seconds,
)
from ui import forms, glue, training_form, tuning_panels, widgets

glue.require_frame(__file__)

START = "configure.start"


def load_chosen() -> None:
    """Load button callback: the chosen experiment in every widget, before they are drawn."""
    name = st.session_state.get(START)
    spec = glue.attempt(load_experiment, name, doing="loading the experiment")
    if spec is not None:
        forms.load_into_form(spec, keep=[START, "configure.load"])
        st.session_state[glue.CURRENT_EXPERIMENT] = name


st.title("Configure")
names = glue.attempt(list_experiments) or []
if names:
    start_col, load_col = st.columns([4, 1], vertical_alignment="bottom")
    start_col.selectbox("Start from a saved experiment", names, key=START)
    load_col.button("Load", icon=":material/upload_file:", key="configure.load", on_click=load_chosen)
draft: RunSpec = st.session_state.get(forms.DRAFT) or glue.current_spec()
if glue.current_experiment() is None:  # the form started from the defaults chosen for this server
    st.info(glue.starter().note, icon=":material/lightbulb:")

st.subheader("1 · Dataset")
dataset = forms.dataset_form(draft.dataset)
location_problem = forms.location_problem(dataset)
if st.button("Preview dataset", icon=":material/visibility:", key="configure.preview",
             disabled=location_problem is not None):
    st.session_state[glue.PREVIEWED] = dataset
preview = None
if st.session_state.get(glue.PREVIEWED) == dataset:
    preview = glue.attempt(glue.dataset_preview, dataset, doing="loading the dataset")
elif st.session_state.get(glue.PREVIEWED):
    st.caption("The dataset settings changed since the last preview; preview again to see them.")
if preview is not None:
    forms.preview_view(preview)
    audit = glue.attempt(latest_audit_for_data, glue.store(), preview.fingerprint,
                         doing="reading the data audit")
    for warning in audit.warnings() if audit is not None else []:
        st.warning(f"{glue.literal(warning)} (the data audit of run {audit.run_id}; see Compare & Classify)",
                   icon=":material/policy:")

st.subheader("2 · Backbone")
backbone = forms.backbone_form(draft.backbone)

st.subheader("3 · Strategy and hyperparameters")
train = training_form.training_form(draft.train, dataset.seed, backbone, dataset.image_size)
if train.strategy == "scratch":
    backbone = dataclasses.replace(backbone, weights="none")
    st.caption("Training from scratch starts from random weights, whatever the weights choice above.")
spec = RunSpec(dataset, backbone, train, name=draft.name)
st.session_state[forms.DRAFT] = spec

problems = glue.attempt(spec_problems, spec, doing="checking the settings")
for problem in problems or []:
    if problem.message not in forms.shown_inline():  # already said under its own field
        glue.show_error(problem)
for warning in glue.attempt(spec_warnings, spec) or []:
    st.warning(warning, icon=":material/warning:")
blocked = problems != [] or bool(forms.shown_inline())  # a missing folder, a number out of range
if not blocked:
    counted = preview.train_images if preview else glue.train_images(dataset)
    images = counted or glue.ASSUMED_TRAIN_IMAGES
    server = glue.server_profile()
    cols = st.columns(3)
    cols[0].metric("Time per epoch (estimate)", format_seconds(estimate_epoch_seconds(spec, images, server)))
    cols[1].metric(f"Whole run, {train.total_epochs} epoch(s)",
                   format_seconds(estimate_run_seconds(spec, images, server)))
    source = ", counted from the dataset's files." if counted else " (assumed: the dataset cannot be listed)."
    cols[2].caption(f"{estimate_basis(spec, server)}; {images:,} training images{source}")
    if train.augmentations and train.strategy != "scratch":
        st.caption(augmentation_costs(spec, images, server=server))
    with st.expander("Learning rate over the run"):
        tuning_panels.schedule_chart(spec, images)

st.subheader("4 · Tune on cached features")
st.caption("Both run in the background on the frozen backbone's features, so they take seconds to a "
           "minute; the page stays usable meanwhile.")
tuning_panels.lr_finder_section(spec, blocked)
tuning_panels.head_search_section(spec, blocked)

st.subheader("5 · Save")
name = st.text_input("Experiment name", key=forms.seeded("configure.name", draft.name),
                     placeholder="e.g. shapes-frozen")
st.session_state[forms.DRAFT] = dataclasses.replace(spec, name=name)  # a typed name survives page visits
if blocked:
    st.caption("Fix the settings marked above to save.")
elif not name.strip():
    st.caption("Give the experiment a name to save it.")
elif " ".join(name.split()) in names:
    st.caption(f"Saving replaces the saved experiment “{' '.join(name.split())}”.")
if st.button("Save experiment", type="primary", icon=":material/save:", key="configure.save",
             disabled=blocked or not name.strip()):
    saved = glue.attempt(save_experiment, name, spec, doing="saving the experiment")
    if saved is not None:
        st.session_state[glue.CURRENT_EXPERIMENT] = saved.name
        st.session_state[forms.DRAFT] = saved
        st.success(f"Saved “{glue.literal(saved.name)}”. It is now the current experiment.",
                   icon=":material/check:")
        st.page_link(widgets.TRAIN_PAGE, label="Train it now", icon=":material/monitoring:")
