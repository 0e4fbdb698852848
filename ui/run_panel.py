"""The Train page's view of the watched run: progress and Stop, live curves, results, run log.

Drawn in a fragment that re-reads the store every poll while the run is queued or running.
"""

from __future__ import annotations

import streamlit as st

from tlcore.errors import RunNotFoundError
from tlcore.records import RunRecord, RunStatus, RunSummary
from tlcore.report.plots import history_figure
from tlcore.report.summaries import format_percent, run_label
from tlcore.runs import jobs
from tlcore.runs.access import User, can_manage
from tlcore.runs.store import RunStore
from tlcore.training.estimate import eta_seconds, format_seconds
from ui import glue, run_focus

LAUNCHED = "train.launched"
"""(run id, reused, how the data changed or None) of the last Launch, for the notice above that run."""
_STOP_ERROR = "train.stop_error"


def show_watched(store: RunStore, user: User) -> None:
    """The watched run, polled while active, with the toggle to follow the next run of its launch."""
    watched = glue.watched_run()
    if not watched:
        return
    with glue.friendly("reading the run"):
        try:
            active = store.get(watched).is_active
        except RunNotFoundError:
            glue.watch(None)
            st.info(f"Run {watched} no longer exists (it was deleted). Pick another run below.")
            return
        glue.watch(watched)  # keep ?run= in the URL after page switches: a refresh reattaches
        if active:
            st.toggle("Follow the next run", value=True, key=run_focus.FOLLOW,
                      help="When this run ends, show the next run of the same experiment or classic "
                           "experiment. Turn it off to stay on this run.")
        st.fragment(run_every=glue.POLL_ACTIVE_S if active else None)(_panel)(watched, active, store, user)


def _panel(run_id: str, live: bool, store: RunStore, user: User) -> None:
    with glue.friendly("showing the run"):
        _draw(run_id, live, store, user)


def _draw(run_id: str, live: bool, store: RunStore, user: User) -> None:
    try:
        run = store.get(run_id)
    except RunNotFoundError:
        st.info(f"Run {run_id} no longer exists (it was deleted).")
        return
    st.subheader(glue.literal(run_label(run)))
    run_focus.followed_notice(run)
    _launch_notice(run)
    # The summary is written once the artifacts are saved, a moment before the status changes:
    # from then on the run is done training, so no progress bar or Stop next to its results.
    if run.is_active and not run.summary:
        run_focus.seen_active(run)
        _progress(run, store, user)
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
        _summary_cards(run.summary)
    if run.notes:
        with st.expander(f"Run log ({len(run.notes)} notes)"):
            st.markdown("\n".join(f"- {note}" for note in run.notes))
    if live and not run.is_active:
        st.rerun()  # stop polling; the full rerun follows the next run and refreshes the table


def _launch_notice(run: RunRecord) -> None:
    """Say what the last Launch did, when it concerns the watched run."""
    launched = st.session_state.get(LAUNCHED)
    if not launched or launched[0] != run.id:
        return
    if len(launched) > 2 and launched[2]:
        st.info(launched[2], icon=":material/difference:")  # "The data changed since ...: 3 images added"
    if launched[1] and run.status == RunStatus.FINISHED:
        st.success("An identical run on the same data finished earlier — showing its results. "
                   "Tick “Train again” to retrain it.", icon=":material/recycling:")
    elif launched[1]:
        st.info(f"An identical run is already {run.status} — following it.")


def progress_text(
    run: RunRecord, position: int | None, eta: float | None, pass_progress: str | None = None
) -> str:
    """What the bar says; after Stop it says so at once, though the worker stops at its next batch.

    Before the first epoch a worker decodes the images it has not seen and computes their
    frozen features; ``pass_progress`` says how far that got ("Decoding images: 5,400 of ...").
    """
    if position:
        return f"Queued — position {position} in the queue"
    if run.stop_requested:
        return f"Stopping after this batch… ({run.progress:.0%} done)"
    if pass_progress:
        return f"{run.status} · {pass_progress}"
    return f"{run.status} · {run.progress:.0%} · about {format_seconds(eta)} left"


def _stop(run_id: str, store: RunStore) -> None:
    """Stop's callback: it runs before the panel is drawn, which then says the stop is under way."""
    try:
        jobs.cancel(run_id, store)
    except Exception as exc:  # noqa: BLE001 - shown in the panel, never raised
        st.session_state[_STOP_ERROR] = glue.describe_error(exc, "stopping a run")


def _progress(run: RunRecord, store: RunStore, user: User) -> None:
    bar_col, stop_col = st.columns([5, 1], vertical_alignment="bottom")
    allowed = can_manage(user, run)
    hint = ("The run ends after its current batch." if run.stop_requested else
            None if allowed else f"Only {run.owner} or an admin can stop it.")
    stop_col.button("Cancel" if run.status == RunStatus.QUEUED else "Stop", icon=":material/stop:",
                    key="train.stop", disabled=not allowed or run.stop_requested, help=hint,
                    on_click=_stop, args=(run.id, store))
    if _STOP_ERROR in st.session_state:
        st.error(st.session_state.pop(_STOP_ERROR), icon=":material/error:")
    epochs_done = [e.seconds for e in store.epochs(run.id)]
    eta = eta_seconds(run.progress, run.started_at, run.spec.train.total_epochs, epochs_done)
    text = progress_text(run, store.queue_position(run.id), eta, store.pass_progress(run.id))
    bar_col.progress(min(max(run.progress, 0.0), 1.0), text=text)
    where = jobs.placement(store, run)
    if where:
        bar_col.caption(f"Training {where}.")


def _summary_cards(summary: RunSummary) -> None:
    """A finished run's headline numbers; summaries of older versions may lack some of them."""
    cols = st.columns(5)
    cols[0].metric("Test accuracy", format_percent(summary.test_accuracy))
    cols[1].metric("Macro F1", f"{summary.macro_f1 or 0:.3f}")
    cols[2].metric("Best val accuracy", format_percent(summary.best_val_accuracy))
    cols[3].metric("Train time", format_seconds(summary.train_seconds))
    cols[4].metric("Trainable params", f"{summary.trainable_params or 0:,}")
