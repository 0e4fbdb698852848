"""Home: what the studio does, and the classic experiment in one click."""

import pandas as pd
import streamlit as st

from tlcore.config import RunSpec
from tlcore.records import RunRecord, RunStatus
from tlcore.report.summaries import accuracy_gain, headline_accuracy, run_label, run_name
from tlcore.runs import jobs
from tlcore.runs.checks import spec_problems, spec_warnings
from tlcore.runs.experiments import classic_experiment, classic_runs
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


def stored_classic_runs(spec: RunSpec) -> list[RunRecord]:
    """The newest stored attempt of each classic run that was ever queued."""
    pairs = glue.attempt(classic_runs, spec, glue.store(), doing="looking up the classic runs") or []
    return [run for _, run in pairs if run is not None]


already = stored_classic_runs(spec)
settled = len(already) == len(runs) and all(run.status == RunStatus.FINISHED or run.is_active
                                            for run in already)
if st.button("Run the classic experiment", type="primary", key="home.classic",
             icon=":material/play_arrow:", disabled=bool(problems) or settled):
    with glue.friendly("queuing the classic experiment"):
        store = glue.store()
        submissions = [jobs.submit(r, store, owner=auth.current_user().name) for r in runs]
        glue.watch(submissions[0].run.id, in_url=False)
        st.rerun()  # so the sidebar lists the new jobs and starts following them
if settled:
    st.caption("These three runs already exist with these settings (below): a run with the same "
               "settings is never trained twice. Change the settings on the Configure page to run "
               "the experiment again.")


def classic_results(spec: RunSpec, live: bool) -> None:
    """Where the classic runs stand and, once some have finished, how they compare.

    Read from the store by spec key, so the answer to "does pretraining help?" is still here
    after a reload, in a new session, or when the runs were queued from the command line.
    """
    found = stored_classic_runs(spec)
    if not found:
        return
    active = any(run.is_active for run in found)
    if active:
        st.success("The classic experiment is queued: the runs train one after another. "
                   "This section and the sidebar follow them.")
    for run in found:
        st.page_link(widgets.TRAIN_PAGE, label=f"{run_label(run)} — {run.status}",
                     icon=":material/monitoring:", query_params={glue.RUN_PARAM: run.id})
    finished = [run for run in found if run.status == RunStatus.FINISHED]
    if finished:
        st.markdown("**Results**")
        curves, scores = st.columns([3, 2])
        labels = {run.id: run_name(run, short=True) for run in finished}
        curves.plotly_chart(glue.comparison_chart(finished, labels, "val_accuracy"), key="home.curves")
        baseline = next((run for run in finished if run.spec.train.strategy == "scratch"), None)
        for run in finished:
            accuracy = headline_accuracy(run)
            gain = None
            if baseline is not None and run is not baseline:
                gain = accuracy_gain(accuracy, headline_accuracy(baseline), "scratch")
            scores.metric(f"{labels[run.id]}: test accuracy", f"{accuracy:.1%}", delta=gain,
                          help="Accuracy on the held-out test split")
        st.page_link(widgets.COMPARE_PAGE, icon=":material/compare:",
                     label="Compare them in detail: confusion matrices, mistakes, your own images",
                     query_params={glue.COMPARE_PARAM: ",".join(run.id for run in finished)})
    if live and not active:
        st.rerun()  # the last run ended: stop polling and draw the final state once


following = any(run.is_active for run in already)
st.fragment(run_every=glue.POLL_ACTIVE_S if following else None)(classic_results)(spec, following)
