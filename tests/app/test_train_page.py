from apptools import open_app, texts, wait_until_ended
from specs import tiny_spec

from tlcore.runs.experiments import save_experiment
from tlcore.runs.store import RunStore


def test_launch_trains_in_a_worker_shows_results_and_reuses_the_run():
    save_experiment("tiny", tiny_spec("frozen", epochs=1))
    at = open_app("pages/train.py")
    assert at.selectbox(key="train.experiment").value == "tiny"
    at.button(key="train.launch").click().run()
    assert not at.exception and not at.error
    store = RunStore()
    [run] = store.list_runs()
    assert at.session_state["watched_run"] == run.id
    assert at.query_params.get("run") == run.id
    assert at.get("progress") or store.get(run.id).status == "finished"

    wait_until_ended(store, run.id, timeout=240)
    assert store.get(run.id).status == "finished", store.get(run.id).error
    at.run()
    assert not at.exception and not at.error
    assert at.get("plotly_chart"), "the per-epoch curves are shown"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"].endswith("%")
    assert "Trainable params" in metrics
    history = at.dataframe[0].value
    assert list(history["run"]) == [run.id] and list(history["status"]) == ["finished"]

    at.button(key="train.launch").click().run()
    assert "An identical run finished earlier — showing its results." in texts(at)
    assert len(store.list_runs()) == 1

    at.switch_page("pages/compare.py").run()
    at.switch_page("pages/train.py").run()
    assert run.id in texts(at) and at.get("plotly_chart"), "coming back shows the watched run again"
    assert at.query_params.get("run") == run.id


def test_a_run_link_reattaches_and_a_missing_run_is_friendly(with_trained_runs):
    run_id = with_trained_runs.run_ids[0]
    at = open_app()
    at.query_params["run"] = run_id
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert run_id in texts(at)
    assert at.get("plotly_chart")
    at.query_params["run"] = "nope"
    at.run()
    assert not at.exception
    assert "no longer exists" in texts(at)


def test_deleting_selected_runs(with_trained_runs, tmp_path, monkeypatch):
    import shutil
    home = tmp_path / "copy"
    shutil.copytree(with_trained_runs.root, home)
    monkeypatch.setenv("TL_HOME", str(home))
    at = open_app("pages/train.py")
    assert len(at.dataframe[0].value) == 2
    shown = list(at.dataframe[0].value["run"])
    at.session_state["train.runs"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    at.button(key="train.delete").click().run()
    assert not at.exception
    assert f"Deleted run {shown[0]}." in texts(at)
    assert [r.id for r in RunStore().list_runs()] == [shown[1]]


def test_stop_and_cancel_reach_the_store():
    import os

    import psutil

    store = RunStore()
    running, _ = store.create_run(tiny_spec(epochs=3))
    store.claim_queued(limit=1)
    store.update(running.id, worker_pid=os.getpid(), worker_started=psutil.Process().create_time())
    queued, _ = store.create_run(tiny_spec(epochs=4))

    at = open_app()
    at.query_params["run"] = queued.id
    at.switch_page("pages/train.py").run()
    assert "Queued — position 1 in the queue" in [p.proto.text for p in at.get("progress")]
    at.button(key="train.stop").click().run()
    assert not at.exception
    assert store.get(queued.id).status == "stopped"
    assert "The run was stopped." in texts(at)

    at.query_params["run"] = running.id
    at.run()
    assert at.button(key="train.stop").label == "Stop"
    at.button(key="train.stop").click().run()
    assert store.stop_requested(running.id)
    store.finish(running.id, "stopped")
