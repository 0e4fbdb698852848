"""Background tasks: requested by a page, run in a process of their own, polled through files."""

from __future__ import annotations

import json
import os
import time

import pytest
from specs import tiny_spec

from tlcore.errors import ConfigError
from tlcore.runs import tasks
from tlcore.runs.tasks import TASK_KINDS, run_task, start_task, task_folder, task_state


def echo(spec, options, report):
    """A task that publishes progress, then returns what it was asked."""
    report({"step": 1, "of": 2})
    return {"source": spec.dataset.source, "options": options, "loss": float("nan")}


def refuse(spec, options, report):
    raise ConfigError("That cannot be done.", "Do something else.")


def crash(spec, options, report):
    raise RuntimeError("boom")


@pytest.fixture
def kinds(monkeypatch):
    monkeypatch.setitem(TASK_KINDS, "echo", f"{__name__}:echo")
    monkeypatch.setitem(TASK_KINDS, "refuse", f"{__name__}:refuse")
    monkeypatch.setitem(TASK_KINDS, "crash", f"{__name__}:crash")
    spawned: list[str] = []
    monkeypatch.setattr(tasks, "_spawn", lambda identifier, folder: spawned.append(identifier))
    return spawned


def test_a_task_runs_publishes_progress_and_leaves_strict_json(kinds, isolated_home):
    identifier = start_task("echo", tiny_spec(), {"budget": 5})
    assert kinds == [identifier]
    assert task_state(identifier).status == "running"  # no pid yet, within the launch grace
    assert run_task(identifier) == 0
    state = task_state(identifier)
    assert state.status == "finished" and state.done
    assert state.progress == {"step": 1, "of": 2}
    assert state.result == {"source": "builtin:shapes", "options": {"budget": 5}, "loss": None}
    json.loads((task_folder(identifier) / tasks.RESULT).read_text())


def test_the_same_request_while_running_is_one_task_and_runs_again_once_done(kinds, isolated_home):
    first = start_task("echo", tiny_spec(), {"budget": 5})
    (task_folder(first) / tasks.PID).write_text(str(os.getpid()))  # alive: this process
    assert start_task("echo", tiny_spec(), {"budget": 5}) == first
    assert start_task("echo", tiny_spec(), {"budget": 6}) != first
    assert len(kinds) == 2
    run_task(first)
    assert start_task("echo", tiny_spec(), {"budget": 5}) == first
    assert len(kinds) == 3 and task_state(first).status == "running"  # the old result is gone


def test_user_errors_and_crashes_fail_the_task_with_a_message(kinds, isolated_home):
    refused = start_task("refuse", tiny_spec())
    assert run_task(refused) == 2
    assert task_state(refused).error.startswith("That cannot be done.")
    crashed = start_task("crash", tiny_spec())
    with pytest.raises(RuntimeError):
        run_task(crashed)
    state = task_state(crashed)
    assert state.status == "failed" and "RuntimeError: boom" in state.error and "task.log" in state.error


def test_a_task_whose_process_died_is_failed(kinds, isolated_home):
    identifier = start_task("echo", tiny_spec())
    (task_folder(identifier) / tasks.PID).write_text("999999999")
    state = task_state(identifier)
    assert state.status == "failed" and "ended without a result" in state.error


def test_unknown_kinds_and_ids_are_refused(kinds, isolated_home):
    with pytest.raises(ConfigError, match="Unknown task"):
        start_task("nothing", tiny_spec())
    for bad in ("", "../x", ".hidden"):
        with pytest.raises(ConfigError):
            task_folder(bad)
    with pytest.raises(ConfigError, match="No task"):
        task_state("echo-000000000000")


@pytest.mark.timeout(300)
def test_an_lr_range_test_runs_in_a_process_of_its_own(isolated_home):
    identifier = start_task("lr-find", tiny_spec())
    while not (state := task_state(identifier)).done:
        time.sleep(0.5)
    assert state.status == "finished", state.error
    rates, losses = state.result["rates"], state.result["losses"]
    assert len(rates) == len(losses) > 10 and rates == sorted(rates)
    assert rates[0] <= state.result["suggestion"] <= rates[-1]
    assert int((task_folder(identifier) / tasks.PID).read_text()) != os.getpid()
