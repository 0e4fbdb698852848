"""The Configure page's tuning help: the planned learning rate, an LR range test and a head search.

The two tests run as background tasks (``ui.task_panel``): they decode the dataset and run the
network, which the server never does. On cached features they take seconds to a minute.
Their results feed back into the form through its draft (:mod:`ui.forms`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import streamlit as st

from tlcore.config import RunSpec
from tlcore.report.search_plots import lr_curve_figure, schedule_figure, trials_figure
from tlcore.runs.experiments import save_experiment, search_experiment_name
from tlcore.training.lr_finder import rate_field
from tlcore.training.schedules import planned_curves
from ui import forms, glue, task_panel

RATE_WIDGETS = {"learning_rate": "configure.lr", "fine_tune_learning_rate": "configure.ft_lr"}


def schedule_chart(spec: RunSpec, train_images: int) -> None:
    """Every step's learning rate over the whole run, stage after stage, as training will use it."""
    curves = planned_curves(spec.train, train_images)
    rates = [rate for curve in curves for rate in curve.rates]
    title = " → ".join(f"{curve.stage}: {curve.kind.replace('_', '-')}" for curve in curves)
    st.plotly_chart(schedule_figure(rates, f"Learning rate per step · {title}"),
                    key="configure.schedule_chart")


def _progress(progress: dict[str, Any]) -> tuple[float, str]:
    return float(progress.get("share", 0.0)), str(progress.get("text", ""))


def _use_rate(field: str, rate: float) -> None:
    """Button callback: the suggested rate in the form (its pick-list offers the draft's value)."""
    draft: RunSpec = st.session_state[forms.DRAFT]
    st.session_state[forms.DRAFT] = dataclasses.replace(
        draft, train=dataclasses.replace(draft.train, **{field: float(f"{rate:.2g}")}))
    st.session_state.pop(RATE_WIDGETS[field], None)


def _lr_result(spec: RunSpec) -> Any:
    def render(finding: dict[str, Any]) -> None:
        st.plotly_chart(lr_curve_figure(finding), key="configure.lr_curve")
        field = rate_field(spec.train)
        where = "on cached features" if finding["on_features"] else "on images"
        st.caption(f"{len(finding['rates'])} steps {where} in {finding['seconds']:.1f} s. Suggested "
                   f"{finding['suggestion']:.2g} ({finding['rule']}); the minimum's tenth is "
                   f"{finding['min_over_ten']:.2g}.")
        st.button(f"Use {finding['suggestion']:.2g} as the {field.replace('_', ' ')}", key="configure.use_lr",
                  on_click=_use_rate, args=(field, finding["suggestion"]), icon=":material/check:")
    return render


def lr_finder_section(spec: RunSpec, blocked: bool) -> None:
    st.markdown("**LR range test** — the rate rises step by step while the loss is recorded; the "
                "steepest fall marks a good rate.")
    task_panel.task_section("configure.lr_find", "lr-find", spec, {}, "Find a learning rate",
                            _lr_result(spec), _progress, disabled=blocked)


def _use_best(best: dict[str, Any]) -> None:
    forms.load_into_form(RunSpec.from_dict(best), keep=["configure.start"])


def _search_result(spec: RunSpec) -> Any:
    def render(search: dict[str, Any]) -> None:
        rows = [{"trial": t["number"], **t["params"], "val accuracy": t["val_accuracy"],
                 "val loss": t["val_loss"], "seconds": t["seconds"]} for t in search["trials"]]
        st.plotly_chart(trials_figure(search), key="configure.trials")
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="configure.trials_table")
        best = search["best"]
        st.caption(f"{len(rows)} trial(s) in {search['spent_seconds']:.0f} s; the best, trial "
                   f"{best['number']}, reached {best['val_accuracy']:.1%} validation accuracy.")
        left, right = st.columns(2)
        left.button("Use the best settings", key="configure.use_best", on_click=_use_best,
                    args=(search["best_spec"],), icon=":material/check:")
        name = search_experiment_name(spec)
        if right.button(f"Save them as “{name}”", key="configure.save_best", icon=":material/save:"):
            saved = glue.attempt(save_experiment, name, RunSpec.from_dict(search["best_spec"]),
                                 doing="saving the experiment")
            if saved is not None:
                st.success(f"Saved “{glue.literal(saved.name)}”.", icon=":material/check:")
    return render


def head_search_section(spec: RunSpec, blocked: bool) -> None:
    budget = spec.train.search_budget_seconds
    st.markdown(f"**Head search** — tries learning rate, dropout, label smoothing, weight decay and a "
                f"hidden layer on cached features for {budget} s (the budget is set above).")
    task_panel.task_section("configure.search", "search", spec, {"budget_seconds": budget},
                            "Search head settings", _search_result(spec), _progress, disabled=blocked)
