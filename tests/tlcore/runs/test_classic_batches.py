"""Classic experiments found in the store (newest first), and the settings a first visit starts from."""

from __future__ import annotations

import dataclasses

from specs import tiny_spec

from tlcore.config import BackboneSpec
from tlcore.paths import keras_models_dir
from tlcore.records import RunStatus
from tlcore.runs.experiments import classic_batch, classic_experiment, recent_classics, starter_spec
from tlcore.runs.store import RunStore


def queue_classic(store: RunStore, spec, finish: bool = True, with_auto: bool = False) -> list[str]:
    ids = []
    for run_spec in classic_experiment(spec, with_auto=with_auto):
        run, _ = store.create_run(run_spec)
        if finish:
            store.finish(run.id, RunStatus.FINISHED)
        ids.append(run.id)
    return ids


def test_classic_experiments_are_listed_newest_first_each_once():
    store = RunStore()
    older = queue_classic(store, tiny_spec(epochs=3))
    store.create_run(dataclasses.replace(tiny_spec(epochs=6), name="not classic"))
    newer = queue_classic(store, tiny_spec(epochs=4))
    batches = recent_classics(store)
    assert [[run.id for run in batch.stored] for batch in batches] == [newer, older]
    assert [spec.train.strategy for spec in batches[0].specs] == ["frozen", "frozen_then_finetune", "scratch"]
    assert recent_classics(store, limit=1)[0].id == batches[0].id


def test_a_batch_is_the_same_rebuilt_from_any_of_its_runs():
    store = RunStore()
    ids = queue_classic(store, tiny_spec(epochs=3), finish=False)
    from_each = {classic_batch(store.get(run_id).spec, store).id for run_id in ids}
    assert len(from_each) == 1
    batch = classic_batch(tiny_spec(epochs=3), store)
    assert [run.id for run in batch.stored] == ids and batch.last_created == store.get(ids[-1]).created_at


def test_a_partly_queued_batch_lists_what_exists_and_a_lookalike_is_ignored():
    store = RunStore()
    spec = classic_experiment(tiny_spec(epochs=3))[0]
    run, _ = store.create_run(spec)
    store.create_run(dataclasses.replace(tiny_spec(epochs=2), name="classic · frozen_then_finetune"))
    [batch] = recent_classics(store)
    assert [r.id if r else None for r in batch.runs] == [run.id, None, None]


def test_an_auto_run_joins_its_batch_with_the_same_budget_once_queued():
    spec = tiny_spec(epochs=4)
    runs = classic_experiment(spec, with_auto=True)
    assert [run.name for run in runs][-1] == "classic · auto"
    auto, two_stage = runs[-1].train, runs[1].train
    assert (auto.strategy, auto.epochs, auto.fine_tune_epochs) == ("auto", two_stage.epochs,
                                                                   two_stage.fine_tune_epochs)
    assert auto.total_epochs == two_stage.total_epochs == 4
    store = RunStore()
    plain = queue_classic(store, spec)
    assert len(classic_batch(spec, store).specs) == 3  # no auto run queued: three runs
    (auto_run, _) = store.create_run(runs[-1])
    batch = classic_batch(store.get(auto_run.id).spec, store)  # rebuilt from the auto run
    assert [run.id for run in batch.stored] == [*plain, auto_run.id]
    [listed] = recent_classics(store)
    assert listed.id == batch.id and len(listed.stored) == 4


def test_the_starter_keeps_the_usual_backbone_when_its_weights_are_here():
    cache = keras_models_dir()
    cache.mkdir(parents=True)
    (cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").write_bytes(b"fake")
    starter = starter_spec()
    assert starter.spec.backbone == BackboneSpec()  # the RunSpec default, unchanged
    assert starter.spec.dataset.source == "builtin:shapes" and "built-in shapes" in starter.note


def test_the_starter_switches_to_the_weights_on_disk():
    cache = keras_models_dir()
    cache.mkdir(parents=True)
    (cache / "mobilenet_7_5_224_tf_no_top.h5").write_bytes(b"fake")
    starter = starter_spec()
    assert (starter.spec.backbone.name, starter.spec.backbone.alpha) == ("mobilenet", 0.75)
    assert starter.spec.backbone.weights == "imagenet" and "MobileNet ×0.75" in starter.note
    starter.spec.validate()
