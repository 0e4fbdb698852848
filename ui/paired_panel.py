"""Compare's "Is the difference real?": two runs paired image by image on one test split."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tlcore.errors import TLError
from tlcore.records import RunRecord
from tlcore.report.paired import PairedComparison
from tlcore.report.summaries import format_percent
from ui import glue

SHOWN_DISAGREEMENTS = 30


def paired_section(runs: list[RunRecord], labels: dict[str, str]) -> None:
    """The verdict in a sentence, each accuracy's interval, per-class deltas, the disagreements."""
    st.header("Is the difference real?")
    if len(runs) != 2:
        st.caption("Pick exactly two runs to compare them image by image (McNemar's exact test).")
        return
    try:
        comparison = glue.paired_comparison(*runs)
    except TLError as exc:
        st.info(f"{exc.message} {exc.hint}".strip(), icon=":material/info:")
        return
    (st.success if comparison.clear else st.info)(glue.literal(comparison.sentence()),
                                                  icon=":material/balance:")
    st.markdown("\n".join(
        f"- **{name}** {glue.literal(labels[run.id])}: test accuracy {format_percent(interval.value)} "
        f"(95 % interval {format_percent(interval.low)} to {format_percent(interval.high)}, bootstrap)"
        for name, run, interval in zip("AB", runs, comparison.accuracy, strict=True)))
    st.dataframe(_per_class_table(comparison), hide_index=True, key="compare.paired.classes",
                 column_config={name: st.column_config.NumberColumn(format="%.3f")
                                for name in ("precision A", "precision B", "recall A", "recall B",
                                             "F1 A", "F1 B", "F1 B - A")})
    _disagreements(comparison)


def _per_class_table(comparison: PairedComparison) -> pd.DataFrame:
    return pd.DataFrame([{
        "class": delta.name,
        "precision A": delta.precision[0], "precision B": delta.precision[1],
        "recall A": delta.recall[0], "recall B": delta.recall[1],
        "F1 A": delta.f1[0], "F1 B": delta.f1[1], "F1 B - A": delta.f1_delta,
    } for delta in comparison.per_class])


def _disagreements(comparison: PairedComparison) -> None:
    count = len(comparison.disagreements)
    with st.expander(f"{count} test image(s) the two runs answer differently"):
        if not count:
            st.caption("The two runs give the same answer on every test image.")
            return
        rows = [{"image": d.id, "true class": d.true, "A answers": d.answer_a, "B answers": d.answer_b}
                for d in comparison.disagreements[:SHOWN_DISAGREEMENTS]]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="compare.paired.disagreements")
        if count > SHOWN_DISAGREEMENTS:
            st.caption(f"The first {SHOWN_DISAGREEMENTS} of {count} are listed.")
