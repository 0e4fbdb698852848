"""Configure: unfreezing by blocks with the parameters that train, the planned learning rate, and
the LR range test and head search run as background tasks whose results feed the form."""

from __future__ import annotations

import json

import pytest
from apptools import open_app, plotly_charts, texts

from tlcore.backbones.keras_apps import catalogue_block_table
from tlcore.runs import tasks
from tlcore.runs.experiments import list_experiments, load_experiment
from ui import forms


@pytest.fixture
def no_task_processes(monkeypatch):
    """Tasks are started but not run: each test writes the result a task would leave."""
    started: list[str] = []
    monkeypatch.setattr(tasks, "_spawn", lambda identifier, folder: started.append(identifier))
    return started


def finish(identifier: str, result: dict) -> None:
    (tasks.task_folder(identifier) / tasks.RESULT).write_text(json.dumps(result))


def draft(at):
    return at.session_state[forms.DRAFT]


def test_blocks_slider_unfreezes_whole_blocks_and_counts_their_parameters():
    at = open_app("pages/configure.py")
    at.selectbox(key="configure.backbone").set_value("mobilenet_v2").run()
    at.radio(key="configure.strategy").set_value("finetune").run()
    assert not at.exception
    at.slider(key="configure.ft_blocks").set_value(3).run()
    alpha = draft(at).backbone.alpha
    blocks = catalogue_block_table("mobilenet_v2", alpha)
    expected = sum(block.params for block in blocks[-3:])
    assert f"{expected:,} backbone parameters train in 3 block(s): block_16, block_15, block_14" in texts(at)
    assert draft(at).train.fine_tune_blocks == 3 and draft(at).train.fine_tune_layers is None
    at.toggle(key="configure.by_blocks").set_value(False).run()
    assert draft(at).train.fine_tune_blocks is None


def test_the_planned_learning_rate_is_drawn_stage_after_stage():
    at = open_app("pages/configure.py")
    at.radio(key="configure.strategy").set_value("frozen_then_finetune").run()
    at.number_input(key="configure.ft_epochs").set_value(2)
    at.selectbox(key="configure.ft_schedule").set_value("cosine").run()
    assert not at.exception
    titles = [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in plotly_charts(at)]
    assert any("frozen: constant → finetune: cosine" in title for title in titles)
    assert draft(at).train.fine_tune_schedule == "cosine"


def test_an_lr_range_test_runs_as_a_task_and_its_suggestion_fills_the_form(no_task_processes):
    at = open_app("pages/configure.py")
    at.button(key="configure.lr_find.start").click().run()
    assert not at.exception and len(no_task_processes) == 1
    assert at.get("progress")  # the running task's bar
    rates = [10 ** (-6 + i / 10) for i in range(50)]
    losses = [1.6 - 0.02 * i if i < 30 else 1.0 + 0.2 * (i - 30) for i in range(50)]
    finish(no_task_processes[0], {"rates": rates, "losses": losses, "smoothed": losses, "suggestion": 0.0021,
                                  "rule": "steepest descent of the smoothed loss", "min_over_ten": 0.0004,
                                  "seconds": 3.2, "on_features": True})
    at.run()
    assert "Suggested 0.0021 (steepest descent of the smoothed loss)" in texts(at)
    at.button(key="configure.use_lr").click().run()
    assert not at.exception
    assert draft(at).train.learning_rate == pytest.approx(0.0021)
    assert at.select_slider(key="configure.lr").value == pytest.approx(0.0021)


def test_a_head_search_shows_its_trials_and_its_best_can_be_used_or_saved(no_task_processes):
    at = open_app("pages/configure.py")
    at.button(key="configure.search.start").click().run()
    spec = draft(at)
    best = spec.to_dict()
    best["train"] |= {"learning_rate": 0.003, "dropout": 0.4}
    trials = [{"number": n, "params": {"learning_rate": lr, "dropout": d}, "val_accuracy": acc,
               "val_loss": 1 - acc, "seconds": 1.5} for n, (lr, d, acc) in
              enumerate([(0.01, 0.1, 0.6), (0.003, 0.4, 0.9), (0.0001, 0.2, 0.5)])]
    finish(no_task_processes[0], {"trials": trials, "best": trials[1], "budget_seconds": 60,
                                  "spent_seconds": 4.5, "best_spec": best})
    at.run()
    assert not at.exception
    assert "3 trial(s) in 4 s; the best, trial 1, reached 90.0% validation accuracy." in texts(at)
    [save] = [b for b in at.button if b.key == "configure.save_best"]
    save.click().run()
    (name,) = list_experiments()
    assert name.startswith("head search · ") and load_experiment(name).train.dropout == 0.4
    at.button(key="configure.use_best").click().run()
    assert draft(at).train.learning_rate == 0.003 and at.slider(key="configure.dropout").value == 0.4
