"""Home: what the studio does, and the classic experiment in one click."""

import pandas as pd
import streamlit as st

from tlcore import jobs
from tlcore.experiments import classic_experiment, spec_problems, spec_warnings
from tlcore.summaries import run_label
from ui import auth, glue, widgets

glue.require_frame(__file__)

st.title("Transfer-Learning Studio")
st.markdown(
    "Train an image classifier on **your images** by building on a network pretrained on ImageNet.  \n"
    "Pick a dataset and a backbone, train it **frozen, fine-tuned or from scratch**, and watch the "
    "curves live.  \n"
    "Compare runs side by side, inspect their mistakes, and classify new images with any of them."
)
cols = st.columns(3)
cols[0].page_link(widgets.CONFIGURE_PAGE, label="1 · Configure an experiment", icon=":material/tune:")
cols[1].page_link(widgets.TRAIN_PAGE, label="2 · Train and watch", icon=":material/monitoring:")
cols[2].page_link(widgets.COMPARE_PAGE, label="3 · Compare & classify", icon=":material/compare:")

st.divider()
st.subheader("The classic experiment")
spec = glue.current_spec()
experiment = st.session_state.get(glue.CURRENT_EXPERIMENT) or spec.name or "the default settings"
st.markdown(
    "Does pretraining help? Train the same classifier three ways — **from scratch**, on a "
    "**frozen** pretrained backbone, and **frozen, then fine-tuned** — with the same data, "
    f"backbone and epoch budget, taken from *{experiment}*."
)
runs = classic_experiment(spec)
st.dataframe(
    pd.DataFrame([
        {"run": r.name, "weights": r.backbone.weights, "epochs": r.train.epochs,
         "fine-tune epochs": r.train.fine_tune_epochs} for r in runs
    ]),
    hide_index=True, width="content",
)
st.caption(f"Dataset `{spec.dataset.source}` at {spec.dataset.image_size} px · backbone "
           f"`{spec.backbone.name}`" + (f" ×{spec.backbone.alpha:g}" if spec.backbone.alpha else ""))
problems = [p for r in runs for p in spec_problems(r)]
for problem in problems[:1]:
    glue.show_error(problem)
for warning in {w for r in runs for w in spec_warnings(r)}:
    st.warning(warning, icon=":material/warning:")

if st.button("Run the classic experiment", type="primary", key="home.classic",
             icon=":material/play_arrow:", disabled=bool(problems)):
    with glue.friendly("queuing the classic experiment"):
        store = glue.store()
        submissions = [jobs.submit(r, store, owner=auth.current_user().name) for r in runs]
        st.session_state["home.classic_runs"] = [s.run.id for s in submissions]
        glue.watch(submissions[0].run.id, in_url=False)
        st.rerun()  # so the sidebar lists the new jobs and starts following them

queued = st.session_state.get("home.classic_runs") or []
if queued:
    st.success("The classic experiment is queued: the runs train one after another. "
               "Follow them in the sidebar, then compare them on the Compare page.")
    for run_id in queued:
        run = glue.attempt(glue.store().get, run_id)
        if run is not None:
            st.page_link(widgets.TRAIN_PAGE, label=f"{run_label(run)} — {run.status}",
                         icon=":material/monitoring:", query_params={glue.RUN_PARAM: run.id})
