"""A button that starts a background task (``tlcore.runs.tasks``) and a panel that follows it.

The task runs in a process of its own, so the server never decodes the dataset or runs the
network for it; the panel re-reads the task's folder in a fragment while it runs, shows its
progress, then hands the result to the caller's renderer. The task id is kept in the session
per panel, so the result stays on the page across reruns until the settings change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from tlcore.config import RunSpec
from tlcore.runs.tasks import TaskState, start_task, task_id, task_state
from ui import glue


def task_section(
    key: str,
    kind: str,
    spec: RunSpec,
    options: dict[str, Any],
    label: str,
    render: Callable[[Any], None],
    describe_progress: Callable[[dict[str, Any]], tuple[float, str]],
    disabled: bool = False,
) -> None:
    """The start button, then the task's progress or result.

    Args:
        key: Session key prefix of this panel (``configure.lr_find``).
        kind: The task kind.
        spec: What the task works on; a changed spec is another task.
        options: The kind's own options.
        label: Text of the start button.
        render: Draws a finished task's result.
        describe_progress: Turns the task's progress into (share done in [0, 1], a line of text).
        disabled: Whether starting is not possible now (the settings have a problem).
    """
    wanted = task_id(kind, spec, options)
    if st.button(label, key=f"{key}.start", disabled=disabled, icon=":material/play_arrow:"):
        started = glue.attempt(start_task, kind, spec, options, doing=f"starting the {kind} task")
        if started is not None:
            st.session_state[f"{key}.task"] = started
    current = st.session_state.get(f"{key}.task")
    if current is None:
        return
    if current != wanted:
        st.caption("The settings changed since this was run; run it again to see them.")
        return
    state = glue.attempt(task_state, current, doing="reading the task")
    if state is None:
        return
    poll = None if state.done else glue.POLL_ACTIVE_S
    st.fragment(run_every=poll)(_follow)(current, render, describe_progress)


def _follow(identifier: str, render: Callable[[Any], None],
            describe_progress: Callable[[dict[str, Any]], tuple[float, str]]) -> None:
    state: TaskState | None = glue.attempt(task_state, identifier, doing="reading the task")
    if state is None:
        return
    if state.status == "running":
        share, text = describe_progress(state.progress or {})
        st.progress(min(1.0, max(0.0, share)), text=text or "Starting…")
        return
    if state.status == "failed":
        st.error(state.error or "The task failed.", icon=":material/error:")
        return
    render(state.result)
    if st.session_state.get(f"{identifier}.seen") is None:
        st.session_state[f"{identifier}.seen"] = True
        st.rerun()  # once: the fragment stops polling
