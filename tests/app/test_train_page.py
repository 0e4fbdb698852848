import dataclasses
import json

from apptools import open_app, texts, wait_until_ended
from runfakes import displayed_table, fake_run
from specs import tiny_spec

from tlcore.records import RunStatus
from tlcore.runs.experiments import save_experiment
from tlcore.runs.store import RunStore
from ui.run_table import table_key


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
    assert "An identical run on the same data finished earlier — showing its results." in texts(at)
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


def select_rows(at, rows):
    """Tick rows of the runs table, as a click on their checkboxes would."""
    key = table_key(RunStore().list_runs())
    at.session_state[key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    return at.run()


def test_delete_asks_first_naming_the_runs_and_deletes_exactly_the_ones_picked(with_trained_runs, tmp_path,
                                                                            monkeypatch):
    import shutil
    home = tmp_path / "copy"
    shutil.copytree(with_trained_runs.root, home)
    monkeypatch.setenv("TL_HOME", str(home))
    at = open_app("pages/train.py")
    shown = list(at.dataframe[0].value["run"])
    assert len(shown) == 2
    select_rows(at, [0])
    at.button(key="train.delete").click().run()
    assert not at.exception
    assert len(RunStore().list_runs()) == 2, "nothing is deleted before the confirmation"
    question = texts(at)
    assert shown[0] in question and shown[1] not in question
    # A run appears meanwhile, at the top of the table where the ticked row was.
    newcomer = fake_run(RunStore(), tiny_spec(epochs=3), "newcomer", RunStatus.FAILED, error="boom")
    at.button(key="train.delete_confirm").click().run()
    assert not at.exception
    assert f"Deleted run {shown[0]}." in texts(at)
    assert sorted(r.id for r in RunStore().list_runs()) == sorted([shown[1], newcomer.id])
    assert at.button(key="train.delete").disabled, "no row stays ticked after a delete"
    assert not any(b.key == "train.delete_confirm" for b in at.button)


def test_delete_can_be_called_off(with_trained_runs, tmp_path, monkeypatch):
    import shutil
    home = tmp_path / "copy"
    shutil.copytree(with_trained_runs.root, home)
    monkeypatch.setenv("TL_HOME", str(home))
    at = open_app("pages/train.py")
    select_rows(at, [0, 1])
    at.button(key="train.delete").click().run()
    assert at.button(key="train.delete_confirm").label == "Delete 2 runs"
    at.button(key="train.delete_cancel").click().run()
    assert not at.exception
    assert len(RunStore().list_runs()) == 2
    assert not any(b.key == "train.delete_confirm" for b in at.button)


def test_the_runs_table_shows_accuracies_as_everywhere_and_a_dash_for_none():
    store = RunStore()
    fake_run(store, tiny_spec(epochs=2), "broken", RunStatus.FAILED, error="boom")
    fake_run(store, tiny_spec(epochs=3), "good", RunStatus.FINISHED, accuracy=0.96667)
    at = open_app("pages/train.py")
    rows = {row["name"]: row for row in displayed_table(at)}
    assert rows["good"]["test acc"] == "96.7%" and rows["good"]["best val acc"] == "96.7%"
    assert rows["broken"]["test acc"] == "—" and rows["broken"]["best val acc"] == "—"
    assert at.dataframe[0].proto.placeholder == "—", "the browser draws missing cells with it"
    columns = json.loads(at.dataframe[0].proto.columns)  # a styled table shows other floats as 16.900000
    assert columns["duration (s)"]["type_config"]["format"] == "%.1f"
    assert at.dataframe[0].value["test acc"].max() == 0.96667, "the numbers stay numbers for sorting"


def test_the_page_follows_the_next_run_of_the_experiment_unless_told_to_stay(monkeypatch):
    monkeypatch.setenv("TL_MAX_JOBS", "3")  # the runs below are all "running" in this process
    store = RunStore()
    first = fake_run(store, tiny_spec(epochs=2), "cats")
    second = fake_run(store, tiny_spec(epochs=3), "cats")
    fake_run(store, tiny_spec(epochs=4), "dogs")
    at = open_app()
    at.query_params["run"] = first.id
    at.switch_page("pages/train.py").run()
    assert at.toggle(key="train.follow").value
    store.finish(first.id, RunStatus.FINISHED)
    at.run()
    assert not at.exception
    assert at.session_state["watched_run"] == second.id and at.query_params.get("run") == second.id
    assert f"Run {first.id} finished; now following the next run" in texts(at)

    third = fake_run(store, tiny_spec(epochs=5), "cats")
    at.run()
    at.toggle(key="train.follow").set_value(False).run()
    store.finish(second.id, RunStatus.STOPPED)
    at.run()
    assert at.session_state["watched_run"] == second.id, "the toggle keeps the page on the ended run"
    assert store.get(third.id).is_active


def test_the_experiment_picker_and_the_shown_run_always_agree():
    one = save_experiment("one", tiny_spec(epochs=2))
    two = save_experiment("two", tiny_spec(epochs=3))
    store = RunStore()
    old_one = fake_run(store, one, "one", RunStatus.FINISHED, accuracy=0.5)
    latest_one = fake_run(store, one, "one", RunStatus.FINISHED, accuracy=0.6)
    classic = fake_run(store, tiny_spec(epochs=4), "classic · frozen", RunStatus.FINISHED, accuracy=0.7)
    at = open_app()
    at.query_params["run"] = old_one.id
    at.switch_page("pages/train.py").run()
    assert at.selectbox(key="train.experiment").value == "one", "a linked run moves the picker"

    at.selectbox(key="train.experiment").set_value("two").run()
    assert not at.exception
    assert at.session_state["watched_run"] is None and "run" not in at.query_params
    assert "Not trained with these settings yet" in texts(at)
    at.selectbox(key="train.experiment").set_value("one").run()
    assert at.session_state["watched_run"] == latest_one.id, "an experiment shows its latest attempt"

    at.query_params["run"] = classic.id  # e.g. the sidebar's Watch link
    at.run()
    picker = at.selectbox(key="train.experiment")
    assert picker.value == f"run:{classic.id}" and classic.id in picker.format_func(picker.value)

    save_experiment("two", two)  # Configure saves "two" and offers "Train it now"
    at.session_state["current_experiment"] = "two"
    at.switch_page("pages/configure.py").run()
    at.switch_page("pages/train.py").run()
    assert at.selectbox(key="train.experiment").value == "two"
    assert at.session_state["watched_run"] is None, "no old run of another experiment is shown"


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
    assert store.get(running.id).status == "running", "the worker stops at its next batch"
    assert at.get("progress")[0].proto.text.startswith("Stopping after this batch…")
    assert at.button(key="train.stop").disabled
    at.run()
    assert at.get("progress")[0].proto.text.startswith("Stopping after this batch…"), "until it ends"
    store.finish(running.id, "stopped")


def test_the_bar_shows_the_decode_and_feature_passes_before_the_first_epoch():
    import os

    import psutil

    store = RunStore()
    run, _ = store.create_run(tiny_spec(epochs=3))
    store.claim_queued(limit=1)
    store.update(run.id, worker_pid=os.getpid(), worker_started=psutil.Process().create_time())
    store.set_pass_progress(run.id, "Decoding images: 5,400 of 20,000 · 310 images/s · about 50 s left")
    at = open_app()
    at.query_params["run"] = run.id
    at.switch_page("pages/train.py").run()
    assert not at.exception
    bars = [p.proto.text for p in at.get("progress")]
    assert any("Decoding images: 5,400 of 20,000" in text for text in bars), bars
    store.set_pass_progress(run.id, None)  # the pass is over: the bar shows epochs again
    at.run()
    assert not any("Decoding" in p.proto.text for p in at.get("progress"))


def test_a_run_name_that_is_markdown_shows_as_typed_in_every_users_sidebar():
    store = RunStore()
    hostile = "[Session expired](https://evil.example) ![x](https://evil.example/x.png) $e^x$"
    run, _ = store.create_run(dataclasses.replace(tiny_spec(epochs=3), name=hostile))
    at = open_app()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    sidebar = [m.value for m in at.sidebar.markdown]
    entry = next(value for value in sidebar if run.id in value)
    assert "](" not in entry.replace("\\](", "") and "\\[Session expired\\]" in entry
    assert "\\$e^x\\$" in entry


def test_train_again_is_unticked_after_the_launch_it_applied_to(monkeypatch):
    from tlcore.runs import jobs

    launched = []
    monkeypatch.setattr(jobs, "dispatch", lambda store: launched.append(1) or [])  # no worker
    save_experiment("tiny", tiny_spec("frozen", epochs=1))
    at = open_app("pages/train.py")
    at.checkbox(key="train.force").check().run()
    at.button(key="train.launch").click().run()
    assert not at.exception and not at.error
    assert at.checkbox(key="train.force").value is False  # one retraining per tick
    assert len(RunStore().list_runs()) == 1


def test_launching_an_experiment_whose_folder_was_deleted_says_so(tmp_path):
    from folders import add_images

    from tlcore.config import DatasetSpec

    root = tmp_path / "pets"
    add_images(root / "cat", 4, seed=1)
    add_images(root / "dog", 4, seed=2)
    spec = dataclasses.replace(tiny_spec("frozen", epochs=1),
                               dataset=DatasetSpec(f"folder:{root}", image_size=32))
    save_experiment("pets", spec)
    import shutil

    shutil.rmtree(root)
    at = open_app("pages/train.py")
    at.button(key="train.launch").click().run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error), [e.value for e in at.error]
    assert RunStore().list_runs() == []
