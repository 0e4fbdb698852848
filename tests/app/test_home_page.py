import dataclasses
import os
from urllib.parse import parse_qs

import psutil
from apptools import class_zip, open_app, texts
from specs import tiny_spec

from tlcore.config import DatasetSpec
from tlcore.data import load_dataset
from tlcore.data.uploads import save_upload
from tlcore.paths import keras_models_dir
from tlcore.records import EpochRecord, RunStatus
from tlcore.runs.experiments import classic_experiment, save_experiment
from tlcore.runs.store import RunStore


def occupy_the_only_job_slot(store: RunStore, monkeypatch) -> str:
    """A 'running' run whose worker is this process, so new runs stay queued (no worker starts)."""
    monkeypatch.setenv("TL_MAX_JOBS", "1")
    blocker, _ = store.create_run(tiny_spec(epochs=7))
    store.claim_queued(limit=1)
    store.update(blocker.id, worker_pid=os.getpid(), worker_started=psutil.Process().create_time())
    return blocker.id


def test_home_explains_the_studio_and_links_the_pages():
    at = open_app()
    assert not at.exception
    assert at.title[0].value == "Transfer-Learning Studio"
    assert "frozen, fine-tuned or from scratch" in texts(at)
    assert len(at.get("page_link")) == 3
    assert "No training jobs are running or queued." in texts(at)


def test_classic_experiment_queues_three_runs_from_the_current_experiment(monkeypatch):
    store = RunStore()
    blocker = occupy_the_only_job_slot(store, monkeypatch)
    save_experiment("tiny", tiny_spec(epochs=3))
    at = open_app()
    assert "taken from *tiny*" in texts(at)
    at.button(key="home.classic").click().run()
    assert not at.exception and not at.error

    runs = sorted((r for r in store.list_runs() if r.id != blocker), key=lambda r: r.created_at)
    # Results first: the pretrained runs take seconds, scratch (the slow baseline) trains last.
    assert [r.spec.train.strategy for r in runs] == ["frozen", "frozen_then_finetune", "scratch"]
    assert {r.status for r in runs} == {"queued"}
    assert {r.spec.dataset for r in runs} == {tiny_spec().dataset}
    assert {r.spec.train.total_epochs for r in runs} == {3}
    assert [store.queue_position(r.id) for r in runs] == [1, 2, 3]
    assert "The classic experiment is queued and training: frozen queued, frozen_then_finetune queued, " \
           "scratch queued." in texts(at)
    assert "already exist" not in texts(at)
    assert "It is under way with these settings" in texts(at)
    assert at.button(key="home.classic").disabled, "queued runs are not queued twice"
    # AppTest drops sidebar output on reruns of st.navigation apps (a real browser keeps it),
    # so the job list is read from a fresh session, as a second visitor would see it.
    sidebar = open_app().sidebar
    assert all(r.id in "\n".join(m.value for m in sidebar.markdown) for r in runs)
    assert "queue position 3" in [p.proto.text for p in sidebar.get("progress")]
    assert len(sidebar.get("page_link")) == 4  # the three classic runs and the blocker
    for run in runs:
        store.request_stop(run.id)
    store.finish(blocker, "stopped")


def record_finished_classic(store: RunStore, spec, accuracies: dict[str, float]) -> list[str]:
    """The classic runs as a finished experiment leaves them: epochs, summary, status."""
    ids = []
    for run_spec in classic_experiment(spec):
        run, _ = store.create_run(run_spec)
        accuracy = accuracies[run_spec.train.strategy]
        for n in (1, 2, 3):
            store.add_epoch(run.id, EpochRecord(n, run_spec.train.strategy, 1.0 / n, accuracy * n / 3,
                                                1.2 / n, accuracy * n / 3, 1e-3, 1.0, 50.0))
        store.update(run.id, summary={"test_accuracy": accuracy, "macro_f1": accuracy,
                                      "best_val_accuracy": accuracy, "train_seconds": 2.0,
                                      "trainable_params": 6405, "epochs": 3})
        store.finish(run.id, "finished")
        ids.append(run.id)
    return ids


def test_classic_results_come_back_in_a_new_session_with_gains_over_scratch():
    store = RunStore()
    spec = tiny_spec(epochs=3)
    save_experiment("tiny", spec)
    ids = record_finished_classic(store, spec, {"scratch": 0.2, "frozen": 0.8, "frozen_then_finetune": 0.85})

    at = open_app()
    assert not at.exception and not at.error
    assert "The classic experiment is queued" not in texts(at), "nothing is active any more"
    assert [c for c in at.get("plotly_chart") if c.proto.id and "home.curves" in c.proto.id]
    scores = {m.label: (m.value, m.delta) for m in at.metric}
    assert scores["classic · frozen: test accuracy"][0] == "80.0%"
    assert "+60.0 points vs scratch" in scores["classic · frozen: test accuracy"][1]
    assert "+65.0 points vs scratch" in scores["classic · frozen_then_finetune: test accuracy"][1]
    assert not scores["classic · scratch: test accuracy"][1], "scratch is the baseline itself"
    links = {link.proto.label: link.proto.page for link in at.get("page_link")}
    assert any(f"{run_id} — finished" in label for label in links for run_id in ids)
    assert at.button(key="home.classic").disabled, "finished runs are not queued again"
    assert "It has run with these settings: the results are below." in texts(at)
    compare_link = next(link for link in at.get("page_link") if link.proto.label.startswith("Compare them"))
    assert compare_link.proto.query_string == "runs=" + "%2C".join(ids)


def test_the_compare_page_opens_on_the_runs_named_in_its_link():
    store = RunStore()
    ids = record_finished_classic(store, tiny_spec(epochs=3),
                                  {"scratch": 0.2, "frozen": 0.8, "frozen_then_finetune": 0.85})
    at = open_app()
    at.query_params["runs"] = ",".join([ids[2], ids[0], "not-a-run"])
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert at.multiselect(key="compare.runs").value == [ids[2], ids[0]]


def test_a_failed_classic_run_can_be_run_again():
    store = RunStore()
    spec = tiny_spec(epochs=3)
    save_experiment("tiny", spec)
    for run_spec in classic_experiment(spec):
        run, _ = store.create_run(run_spec)
        store.finish(run.id, "failed" if run_spec.train.strategy == "scratch" else "finished", "boom")
    at = open_app()
    assert not at.exception
    assert not at.button(key="home.classic").disabled
    assert "already exist" not in texts(at)
    assert any("— failed" in link.proto.label for link in at.get("page_link"))


def test_each_classic_run_and_all_three_have_an_estimate_before_starting():
    save_experiment("tiny", tiny_spec(epochs=4))
    at = open_app()
    table = at.dataframe[0].value
    assert list(table["run"]) == ["classic · frozen", "classic · frozen_then_finetune", "classic · scratch"]
    times = list(table["estimated time"])
    assert all(t and t != "—" for t in times)
    caption = next(c.value for c in at.caption if c.value.startswith("All three: about"))
    images = len(load_dataset(tiny_spec().dataset).train)  # counted from the listing, as a run splits it
    assert f"for {images:,} training images." in caption and "first result is due after about" in caption
    at.toggle(key="home.with_auto").set_value(True).run()
    table = at.dataframe[0].value
    assert list(table["run"])[-1] == "classic · auto" and len(table) == 4
    assert any(c.value.startswith("All four: about") for c in at.caption)


def test_home_remembers_earlier_classic_experiments_after_others_are_saved():
    store = RunStore()
    old_spec = tiny_spec(epochs=3)
    save_experiment("last week", old_spec)
    old_ids = record_finished_classic(store, old_spec,
                                      {"scratch": 0.2, "frozen": 0.8, "frozen_then_finetune": 0.9})
    save_experiment("today", tiny_spec(epochs=5))  # newer: now the current experiment

    at = open_app()
    assert not at.exception and not at.error
    assert "taken from *today*" in texts(at)
    picker = at.selectbox(key="home.batch")
    assert len(picker.options) == 1 and "3 epochs" in picker.options[0]
    scores = {m.label: m.value for m in at.metric}
    assert scores["classic · frozen_then_finetune: test accuracy"] == "90.0%"
    assert not at.button(key="home.classic").disabled, "today's settings have not run yet"

    new_ids = record_finished_classic(store, tiny_spec(epochs=5), {"scratch": 0.3, "frozen": 0.7,
                                                                   "frozen_then_finetune": 0.75})
    at = open_app()
    picker = at.selectbox(key="home.batch")
    assert len(picker.options) == 2 and "(the current settings)" in picker.format_func(picker.value)
    assert {m.label: m.value for m in at.metric}["classic · frozen: test accuracy"] == "70.0%"
    picker.set_value(picker.options[1]).run()
    assert {m.label: m.value for m in at.metric}["classic · frozen: test accuracy"] == "80.0%"
    links = [link.proto.label for link in at.get("page_link")]
    assert any(old_ids[0] in label for label in links) and not any(new_ids[0] in label for label in links)


def compare_link_ids(at) -> list[str]:
    link = next(link for link in at.get("page_link") if link.proto.label.startswith("Compare them"))
    return parse_qs(link.proto.query_string)["runs"][0].split(",")


def test_the_compare_link_carries_every_run_of_the_batch_and_compare_selects_them():
    store = RunStore()
    spec = tiny_spec(epochs=3)
    save_experiment("tiny", spec)
    ids = record_finished_classic(store, spec, {"scratch": 0.2, "frozen": 0.8, "frozen_then_finetune": 0.85})
    scratch = store.get(ids[2])
    assert scratch.spec.train.strategy == "scratch"
    # The slow one is still going (its worker is this process, so nothing reaps it).
    store.update(scratch.id, status=RunStatus.RUNNING, finished_at=None, worker_pid=os.getpid(),
                 worker_started=psutil.Process().create_time())
    assert compare_link_ids(open_app()) == ids

    store.finish(scratch.id, "finished")
    at = open_app()
    at.query_params["runs"] = ",".join(compare_link_ids(at))
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert at.multiselect(key="compare.runs").value == ids


def test_defaults_and_uploads_are_named_for_people(monkeypatch):
    cache = keras_models_dir()
    cache.mkdir(parents=True)
    (cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5").write_bytes(b"fake")
    at = open_app()
    note = "MobileNetV2 ×0.35, because its ImageNet weights are on this server"
    assert any(note in i.value for i in at.info)
    assert "`mobilenet_v2 ×0.35`" in texts(at)
    assert not at.warning, "the default backbone's weights are on disk"

    archive = save_upload(class_zip(), "cats_vs_dogs.zip")
    spec = dataclasses.replace(tiny_spec(epochs=2),
                               dataset=DatasetSpec(source=f"zip:{archive}", image_size=48))
    save_experiment("pets", spec)
    at = open_app()
    assert "Dataset **cats_vs_dogs.zip**" in texts(at) and str(archive) not in texts(at)


def test_the_classic_results_say_whether_each_difference_is_real():
    from tlcore.records import RunArtifacts
    from tlcore.report.paired import TestPredictions

    store = RunStore()
    spec = tiny_spec(epochs=3)
    save_experiment("tiny", spec)
    accuracies = {"scratch": 0.2, "frozen": 0.8, "frozen_then_finetune": 0.85}
    ids = record_finished_classic(store, spec, accuracies)
    true = [i % 2 for i in range(100)]
    for run_id in ids:
        share = accuracies[store.get(run_id).spec.train.strategy]
        predicted = [t if i < share * 100 else 1 - t for i, t in enumerate(true)]
        answers = TestPredictions([f"img{i}" for i in range(100)], [f"t/{i}" for i in range(100)], true,
                                  predicted, [0.9] * 100, [[p] for p in predicted], ["a", "b"])
        store.write_json(run_id, RunArtifacts.PREDICTIONS, answers.to_dict())
    at = open_app()
    assert not at.exception and not at.error
    table = next(frame.value for frame in at.dataframe if "p (McNemar)" in frame.value.columns)
    assert table.to_dict("records") == [
        {"comparison": "frozen_then_finetune vs frozen", "fixed": 5, "broke": 0, "p (McNemar)": "0.062",
         "verdict": "not clear"},
        {"comparison": "frozen vs scratch", "fixed": 60, "broke": 0, "p (McNemar)": "1.7e-18",
         "verdict": "clear: frozen is better"},
        {"comparison": "frozen_then_finetune vs scratch", "fixed": 65, "broke": 0, "p (McNemar)": "5.4e-20",
         "verdict": "clear: frozen_then_finetune is better"},
    ]
    assert any("same 100 test images" in caption.value for caption in at.caption)
