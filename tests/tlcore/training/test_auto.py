"""The auto strategy: a head search on cached features, then the top blocks fine-tuned."""

from __future__ import annotations

import dataclasses
import json

from recording import RecordingObserver
from specs import tiny_spec

from tlcore.config import AUTO_FINE_TUNE_BLOCKS, BackboneSpec, TrainSpec
from tlcore.training.checkpoint import HEAD_SEARCH_FILE
from tlcore.training.loop import train


def test_auto_searches_the_head_then_fine_tunes_the_top_blocks(tmp_path):
    spec = tiny_spec("auto", epochs=1, fine_tune_epochs=1, search_budget_seconds=5)
    observer = RecordingObserver()
    result = train(spec, observer, checkpoint_dir=tmp_path)
    search_note = next(n for n in result.notes if n.startswith("Head search:"))
    assert "trial(s)" in search_note and "budget" in search_note
    assert [record.stage for record in result.history] == ["frozen", "finetune"]
    searching = [p for p in observer.passes if p.name.startswith("Head search: trial")]
    assert searching and searching[-1].total == 5 and searching[-1].name.startswith(
        f"Head search: trial {search_note.split(' trial(s)')[0].split()[-1]},")
    chosen = json.loads((tmp_path / HEAD_SEARCH_FILE).read_text())
    assert set(chosen) <= set(TrainSpec().__dict__)
    assert result.model.get_layer("dropout").rate == chosen["dropout"]
    stages = [n for n in result.notes if n.startswith("Stage finetune")]
    assert stages and "cosine" in stages[0]
    then = next(n for n in result.notes if n.startswith("Then:"))
    assert f"top {AUTO_FINE_TUNE_BLOCKS} block" in then and "4 cached view(s) per image (flip)" in then
    # Validation and test features come from the search's pass: read back, not forwarded again.
    frozen_summary = next(n for n in result.notes if n.startswith("Frozen part up to pool"))
    assert int(frozen_summary.split(" image(s) forwarded, ")[1].split()[0].replace(",", "")) > 0


def test_a_resumed_auto_run_keeps_the_head_it_chose(tmp_path):
    (tmp_path / HEAD_SEARCH_FILE).write_text(json.dumps({"learning_rate": 0.003, "dropout": 0.35}))
    result = train(tiny_spec("auto", epochs=1, fine_tune_epochs=1), checkpoint_dir=tmp_path)
    assert not any(n.startswith("Head search:") for n in result.notes)
    assert any("the search chose" in n for n in result.notes)
    assert result.model.get_layer("dropout").rate == 0.35


def test_auto_plans_a_cosine_fine_tune_with_discriminative_rates_and_early_stopping():
    plan = TrainSpec(strategy="auto", epochs=4).auto_plan({"learning_rate": 0.01, "head_hidden_units": 128})
    assert plan.strategy == "frozen_then_finetune" and plan.learning_rate == 0.01
    assert plan.head_hidden_units == 128 and plan.fine_tune_epochs == 4
    assert plan.fine_tune_schedule == "cosine" and plan.discriminative_floor < 1
    assert plan.fine_tune_blocks == AUTO_FINE_TUNE_BLOCKS and plan.early_stopping_patience > 0
    assert plan.augmentations == ("flip",) and plan.augment_views == 4
    kept = TrainSpec(strategy="auto", fine_tune_blocks=5, early_stopping_patience=1,
                     augmentations=("zoom",)).auto_plan()
    assert kept.fine_tune_blocks == 5 and kept.early_stopping_patience == 1
    assert kept.augmentations == ("zoom",) and kept.augment_views == 0
    assert TrainSpec(strategy="auto", epochs=3, fine_tune_epochs=2).total_epochs == 5


def test_auto_fits_its_blocks_to_the_backbone():
    from tlcore.training.auto import _fit_blocks

    notes: list[str] = []
    spec = tiny_spec("auto")
    assert _fit_blocks(spec, spec.train.auto_plan(), notes.append).fine_tune_blocks == AUTO_FINE_TUNE_BLOCKS
    hub = dataclasses.replace(spec, backbone=BackboneSpec("hub:https://tfhub.dev/x/y/1"))
    plan = _fit_blocks(hub, hub.train.auto_plan(), notes.append)
    assert plan.fine_tune_blocks is None and plan.fine_tune_fraction == 0.25
    assert notes == ["This backbone declares no blocks: auto fine-tunes the top quarter of its layers "
                     "instead."]
