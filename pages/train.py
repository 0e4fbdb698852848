"""Train: launch the current experiment, watch a run live, manage the run history."""

import pandas as pd
import streamlit as st

from tlcore.errors import RunNotFoundError
from tlcore.records import RunRecord, RunStatus, RunSummary
from tlcore.report.plots import history_figure
from tlcore.report.summaries import history_rows, run_label
from tlcore.runs import jobs
from tlcore.runs.access import can_manage, require_manage
from tlcore.runs.experiments import list_experiments, load_experiment
from tlcore.training.estimate import eta_seconds, format_seconds
from ui import auth, glue, widgets

glue.require_frame(__file__)

store = glue.store()
user = auth.current_user()
st.title("Train")

names = glue.attempt(list_experiments, doing="listing experiments") or []
if not names:
    st.info("There is no saved experiment yet. Configure one and save it, then launch it here.")
    st.page_link(widgets.CONFIGURE_PAGE, label="Configure an experiment", icon=":material/tune:")
else:
    current = st.session_state.get(glue.CURRENT_EXPERIMENT)
    name = st.selectbox("Experiment", names, index=names.index(current) if current in names else 0,
                        key="train.experiment")
    st.session_state[glue.CURRENT_EXPERIMENT] = name
    spec = glue.attempt(load_experiment, name, doing="loading the experiment")
    if spec is not None:
        st.caption(f"{spec.describe()} · {spec.dataset.image_size} px · "
                   f"{spec.train.total_epochs} epoch(s) · batch {spec.train.batch_size}")
        launch_col, force_col = st.columns([1, 4], vertical_alignment="center")
        force = force_col.checkbox("Train again even if an identical run finished", key="train.force")
        if launch_col.button("Launch", type="primary", icon=":material/play_arrow:", key="train.launch"):
            with glue.friendly("launching the run"):
                submission = jobs.submit(spec, store, force=force, owner=user.name)
                glue.watch(submission.run.id)
                st.session_state["train.launched"] = (submission.run.id, submission.reused)
                st.rerun()  # so the sidebar lists the new job and starts following it


def launch_notice(run: RunRecord) -> None:
    """Say what the last Launch did, when it concerns the watched run."""
    launched = st.session_state.get("train.launched")
    if not launched or launched[0] != run.id:
        return
    if launched[1] and run.status == RunStatus.FINISHED:
        st.success("An identical run finished earlier — showing its results. "
                   "Tick “Train again” to retrain it.", icon=":material/recycling:")
    elif launched[1]:
        st.info(f"An identical run is already {run.status} — following it.")


def run_panel(run_id: str, live: bool) -> None:
    """One run: progress, live curves, results; re-read from the store on every poll."""
    with glue.friendly("showing the run"):
        draw_run(run_id, live)


def summary_cards(summary: RunSummary) -> None:
    """A finished run's headline numbers; summaries of older versions may lack some of them."""
    cols = st.columns(5)
    cols[0].metric("Test accuracy", f"{summary.test_accuracy:.1%}")
    cols[1].metric("Macro F1", f"{summary.macro_f1 or 0:.3f}")
    cols[2].metric("Best val accuracy", f"{summary.best_val_accuracy or 0:.1%}")
    cols[3].metric("Train time", format_seconds(summary.train_seconds))
    cols[4].metric("Trainable params", f"{summary.trainable_params or 0:,}")


def draw_run(run_id: str, live: bool) -> None:
    try:
        run = store.get(run_id)
    except RunNotFoundError:
        st.info(f"Run {run_id} no longer exists (it was deleted).")
        return
    st.subheader(run_label(run))
    launch_notice(run)
    # The summary is written once the artifacts are saved, a moment before the status changes:
    # from then on the run is done training, so no progress bar or Stop next to its results.
    if run.is_active and not run.summary:
        bar_col, stop_col = st.columns([5, 1], vertical_alignment="bottom")
        allowed = can_manage(user, run)
        if stop_col.button("Cancel" if run.status == RunStatus.QUEUED else "Stop", icon=":material/stop:",
                           key="train.stop", disabled=not allowed,
                           help=None if allowed else f"Only {run.owner} or an admin can stop it."):
            run = jobs.cancel(run.id, store)
        position = store.queue_position(run.id)
        epochs_done = [e.seconds for e in store.epochs(run.id)]
        eta = eta_seconds(run.progress, run.started_at, run.spec.train.total_epochs, epochs_done)
        text = (f"Queued — position {position} in the queue" if position else
                f"{run.status} · {run.progress:.0%} · about {format_seconds(eta)} left")
        bar_col.progress(min(max(run.progress, 0.0), 1.0), text=text)
    history = store.epochs(run.id)
    if history:
        st.plotly_chart(history_figure(history, run.spec.train.total_epochs), key="train.curves")
    elif run.is_active:
        st.caption("The curves appear after the first epoch.")
    if run.status == RunStatus.FAILED:
        st.error(f"The run failed: {run.error}", icon=":material/error:")
    elif run.status == RunStatus.STOPPED:
        st.warning("The run was stopped" + (" after the epochs shown." if history else "."))
    if run.summary:
        summary_cards(run.summary)
    if run.notes:
        with st.expander(f"Run log ({len(run.notes)} notes)"):
            st.markdown("\n".join(f"- {note}" for note in run.notes))
    if live and not run.is_active:
        st.rerun()  # stop polling; the full rerun also refreshes the run table


watched = glue.watched_run()
if watched:
    with glue.friendly("reading the run"):
        try:
            active = store.get(watched).is_active
        except RunNotFoundError:
            glue.watch(None)
            st.info(f"Run {watched} no longer exists (it was deleted). Pick another run below.")
        else:
            glue.watch(watched)  # keep ?run= in the URL after page switches: a refresh reattaches
            st.fragment(run_every=glue.POLL_ACTIVE_S if active else None)(run_panel)(watched, active)


def delete_selected() -> None:
    """Button callback: delete the selected runs before the table is drawn again."""
    shown = st.session_state.get("train.shown_ids", [])
    rows = st.session_state.get("train.runs", {}).get("selection", {}).get("rows", [])
    messages = []
    for run_id in [shown[i] for i in rows if i < len(shown)]:
        try:
            require_manage(user, store.get(run_id))
            store.delete(run_id)
            messages.append(("success", f"Deleted run {run_id}."))
            if st.session_state.get(glue.WATCHED_RUN) == run_id:
                glue.watch(None)
        except Exception as exc:  # noqa: BLE001 - reported below the table, never raised
            messages.append(("error", f"Run {run_id}: {glue.describe_error(exc, 'deleting a run')}"))
    st.session_state["train.flash"] = messages


st.divider()
st.subheader("All runs")
for kind, text in st.session_state.pop("train.flash", []):
    (st.success if kind == "success" else st.error)(text)
scope = "All runs"
if user.name is not None:
    scope = st.segmented_control("Show", ["My runs", "All runs"], default="My runs",
                                 key="train.scope") or "My runs"
owner = user.name if scope == "My runs" else None
runs = glue.attempt(store.list_runs, owner=owner, doing="listing runs") or []
if not runs:
    st.caption("No runs yet.")
else:
    st.session_state["train.shown_ids"] = [r.id for r in runs]
    percent = st.column_config.NumberColumn(format="percent")
    event = st.dataframe(pd.DataFrame(history_rows(runs)), hide_index=True, on_select="rerun",
                         selection_mode="multi-row", key="train.runs",
                         column_config={"best val acc": percent, "test acc": percent})
    chosen = [runs[i].id for i in event.selection.rows if i < len(runs)]
    watch_col, delete_col, _ = st.columns([1, 1, 3])
    if watch_col.button("Watch selected", key="train.watch_selected", disabled=len(chosen) != 1):
        glue.watch(chosen[0])
        st.rerun()
    delete_col.button("Delete selected", key="train.delete", icon=":material/delete:",
                      disabled=not chosen, on_click=delete_selected)
    st.caption("Select rows to watch or delete runs. Stop a running run before deleting it.")
