import dataclasses

from specs import tiny_spec

from tlcore.records import RunStatus
from tlcore.runs.experiments import classic_experiment
from tlcore.runs.follow import classic_keys, next_run, same_batch
from tlcore.runs.store import Claimant, RunStore


def queue(store, spec, name, running=False):
    run, _ = store.create_run(dataclasses.replace(spec, name=name), force=True, data_fingerprint="f00d",
                              claimant=Claimant.current() if running else None)
    return run


def test_the_next_run_of_the_same_experiment_is_followed_running_first_then_oldest():
    store = RunStore()
    ended = queue(store, tiny_spec(), "cats")
    store.finish(ended.id, RunStatus.FINISHED)
    other_experiment = queue(store, tiny_spec(epochs=2), "dogs", running=True)
    first_queued = queue(store, tiny_spec(epochs=3), "cats")
    second_queued = queue(store, tiny_spec(epochs=4), "cats")
    runs = store.list_runs()
    assert next_run(store.get(ended.id), runs).id == first_queued.id
    running = queue(store, tiny_spec(epochs=5), "cats", running=True)
    assert next_run(store.get(ended.id), store.list_runs()).id == running.id
    assert not same_batch(store.get(ended.id), other_experiment)
    store.finish(running.id, RunStatus.STOPPED)
    store.request_stop(first_queued.id)
    store.request_stop(second_queued.id)
    assert next_run(store.get(ended.id), store.list_runs()) is None, "only queued or running runs"


def test_a_classic_run_is_followed_by_the_others_of_its_batch_only():
    store = RunStore()
    batch = [queue(store, spec, spec.name) for spec in classic_experiment(tiny_spec(epochs=3))]
    other_batch = [queue(store, spec, spec.name) for spec in classic_experiment(tiny_spec(epochs=4))]
    for run in batch + other_batch:
        assert classic_keys(run) == {r.spec.key() for r in (batch if run in batch else other_batch)}
    ended = batch[0]
    store.finish(ended.id, RunStatus.FINISHED)
    runs = store.list_runs()
    assert next_run(store.get(ended.id), runs).id == batch[1].id
    assert all(not same_batch(ended, run) for run in other_batch)


def test_an_unnamed_run_or_one_that_only_looks_classic_has_no_batch():
    store = RunStore()
    unnamed = queue(store, tiny_spec(), "")
    lookalike = queue(store, tiny_spec(epochs=2), "classic · finetune")
    later = queue(store, tiny_spec(epochs=3), "")
    assert classic_keys(unnamed) == frozenset() and classic_keys(lookalike) == frozenset()
    assert next_run(unnamed, store.list_runs()) is None
    assert not same_batch(unnamed, later)
