"""Train: launch an experiment, watch its run live, manage the run history.

The experiment at the top and the run below always agree (``ui.run_focus``); the watched run is
drawn by ``ui.run_panel``, the table of runs and its delete confirmation by ``ui.run_table``.
"""

import streamlit as st

from tlcore.config import RunSpec
from tlcore.report.summaries import describe_spec
from tlcore.runs import jobs
from tlcore.runs.experiments import list_experiments, load_experiment
from ui import auth, glue, run_focus, run_panel, run_table, widgets

glue.require_frame(__file__)

store = glue.store()
user = auth.current_user()
st.title("Train")


FORCE = "train.force"
LAUNCH_ERROR = "train.launch_error"


def picked_spec(option: str) -> RunSpec:
    """The settings the picker stands for: a saved experiment, or a run's own settings."""
    if option.startswith(run_focus.RUN_OPTION):
        return store.get(option.removeprefix(run_focus.RUN_OPTION)).spec
    return load_experiment(option)


def launch_section(spec: RunSpec) -> None:
    st.caption(f"{describe_spec(spec)} · {spec.dataset.image_size} px · "
               f"{spec.train.total_epochs} epoch(s) · batch {spec.train.batch_size}")
    launch_col, force_col = st.columns([1, 4], vertical_alignment="center")
    force_col.checkbox("Train again even if an identical run finished", key=FORCE)
    launch_col.button("Launch", type="primary", icon=":material/play_arrow:", key="train.launch",
                      on_click=launch, args=(spec,))
    if LAUNCH_ERROR in st.session_state:
        st.error(st.session_state.pop(LAUNCH_ERROR), icon=":material/error:")
    if not glue.watched_run():
        st.caption("Not trained with these settings yet: press Launch to train it.")


def launch(spec: RunSpec) -> None:
    """Launch's callback: it runs before the page is drawn, so the page shows the new run, and
    "Train again" can be unticked (one retraining per tick, never a habit of the page)."""
    try:
        submission = jobs.submit(spec, store, force=st.session_state.get(FORCE, False), owner=user.name)
    except Exception as exc:  # noqa: BLE001 - shown on the page, never raised
        st.session_state[LAUNCH_ERROR] = glue.describe_error(exc, "launching the run")
        return
    st.session_state[FORCE] = False
    glue.watch(submission.run.id)
    st.session_state[run_panel.LAUNCHED] = (submission.run.id, submission.reused, submission.data_change)


names = glue.attempt(list_experiments, doing="listing experiments") or []
run_focus.follow_next(store)
run_focus.agree(names, store)
if not names:
    st.info("There is no saved experiment yet. Configure one and save it, then launch it here.")
    st.page_link(widgets.CONFIGURE_PAGE, label="Configure an experiment", icon=":material/tune:")
if run_focus.options(names):
    option = st.selectbox("Experiment", run_focus.options(names), key=run_focus.PICKED,
                          format_func=lambda o: run_focus.label(o, store),
                          on_change=run_focus.picked, args=(store,))
    run_focus.remember(names)
    spec = glue.attempt(picked_spec, option, doing="loading the experiment")
    if spec is not None:
        launch_section(spec)
run_panel.show_watched(store, user)

st.divider()
st.subheader("All runs")
scope = "All runs"
if user.name is not None:
    scope = st.segmented_control("Show", ["My runs", "All runs"], default="My runs",
                                 key="train.scope") or "My runs"
runs = glue.attempt(store.list_runs, owner=user.name if scope == "My runs" else None,
                    doing="listing runs") or []
if runs:
    run_table.runs_table(runs, store, user)
else:
    st.caption("No runs yet.")
