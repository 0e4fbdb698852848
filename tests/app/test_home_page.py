import os

import psutil
from apptools import open_app, texts
from specs import tiny_spec

from tlcore.experiments import save_experiment
from tlcore.store import RunStore


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

    runs = [r for r in store.list_runs() if r.id != blocker]
    assert sorted(r.spec.train.strategy for r in runs) == ["frozen", "frozen_then_finetune", "scratch"]
    assert {r.status for r in runs} == {"queued"}
    assert {r.spec.dataset for r in runs} == {tiny_spec().dataset}
    assert {r.spec.train.total_epochs for r in runs} == {3}
    assert [store.queue_position(r.id) for r in sorted(runs, key=lambda r: r.created_at)] == [1, 2, 3]
    assert "The classic experiment is queued" in texts(at)
    # AppTest drops sidebar output on reruns of st.navigation apps (a real browser keeps it),
    # so the job list is read from a fresh session, as a second visitor would see it.
    sidebar = open_app().sidebar
    assert all(r.id in "\n".join(m.value for m in sidebar.markdown) for r in runs)
    assert "queue position 3" in [p.proto.text for p in sidebar.get("progress")]
    assert len(sidebar.get("page_link")) == 4  # the three classic runs and the blocker
    for run in runs:
        store.request_stop(run.id)
    store.finish(blocker, "stopped")
