import pytest

from tlcore.errors import ConfigError
from tlcore.records import EpochRecord
from tlcore.report.evaluate import ClassMetrics, EvalReport, Prediction
from tlcore.report.plots import (
    ALL_PER_CLASS,
    PER_CLASS_METRICS,
    RUN_COLORS,
    RUN_DASHES,
    TITLE_WIDTH,
    class_counts_figure,
    comparison_figure,
    confusion_figure,
    history_figure,
    history_frame,
    per_class_f1_figure,
    predictions_figure,
    run_style,
    stage_boundaries,
    wrap_title,
)


def records(stages):
    return [EpochRecord(i + 1, s, 1.0, 0.5, 1.0, 0.5, 1e-3, 1.0, 5.0) for i, s in enumerate(stages)]


def test_history_marks_the_finetune_boundary_only_when_there_is_one():
    two_stage = records(["frozen", "frozen", "finetune"])
    assert stage_boundaries(history_frame(two_stage)) == [2.5]
    assert stage_boundaries(history_frame(records(["frozen"] * 3))) == []
    fig = history_figure(two_stage, total_epochs=5)
    assert len(fig.data) == 4
    assert any(shape.x0 == 2.5 for shape in fig.layout.shapes)
    assert tuple(fig.layout.xaxis.range) == (0.5, 5.5)


def test_history_of_no_epochs_still_draws():
    assert len(history_figure([]).data) == 4


def report():
    return EvalReport(0.5, 2, 1.0, [ClassMetrics("a", 1, 0.5, 0.67, 2), ClassMetrics("b", 0.5, 1, 0.67, 1)],
                      {"f1": 0.67}, {"f1": 0.67}, [[1, 1], [0, 1]], ["a", "b"])


def test_confusion_is_row_normalised_with_counts_as_text():
    fig = confusion_figure(report())
    assert fig.data[0].z.tolist() == [[0.5, 0.5], [0.0, 1.0]]
    assert fig.data[0].text.tolist() == [[1, 1], [0, 1]]


def test_accuracy_comparisons_use_the_whole_0_to_1_scale():
    histories = {"x": records(["frozen"])}
    assert tuple(comparison_figure(histories, "val_accuracy").layout.yaxis.range) == (0, 1.02)
    assert comparison_figure(histories, "val_loss").layout.yaxis.range is None
    assert comparison_figure(histories, "val_loss").layout.yaxis.title.text == "loss"


def test_other_figures_have_one_trace_per_run_or_split():
    assert len(comparison_figure({"x": records(["frozen"]), "y": records(["scratch"])}).data) == 2
    assert len(per_class_f1_figure({"x": report(), "y": report()}).data) == 2
    assert len(class_counts_figure({"train": {"a": 3}, "val": {"a": 1}}).data) == 2
    fig = predictions_figure({"run": [Prediction("a", 0.7), Prediction("b", 0.3)]})
    assert list(fig.data[0].y) == ["b", "a"]


def test_each_run_keeps_one_colour_and_neighbours_differ_in_colour_dash_and_marker():
    histories = {name: records(["frozen", "frozen"]) for name in ("scratch", "frozen", "fine-tuned")}
    lines = comparison_figure(histories).data
    assert len({t.line.color for t in lines}) == 3 and len({t.line.dash for t in lines}) == 3
    assert len({t.marker.symbol for t in lines}) == 3
    reports = {name: report() for name in histories}
    bars = per_class_f1_figure(reports).data
    answers = predictions_figure({name: [Prediction("a", 0.6)] for name in histories}).data
    colours = [t.line.color for t in lines]
    assert colours == [b.marker.color for b in bars] == [b.marker.color for b in answers]
    assert run_style(0) != run_style(1) and run_style(0) == run_style(len(RUN_COLORS) * len(RUN_DASHES) * 3)


def test_long_titles_are_broken_into_lines_that_fit_the_chart():
    title = "classic · frozen_then_finetune · abeceb9c5b28 (stopped)"
    wrapped = wrap_title(title)
    lines = wrapped.split("<br>")
    assert len(lines) > 1 and all(len(line) <= TITLE_WIDTH for line in lines)
    assert " ".join(lines).replace(" · ", " ").split() == title.replace(" · ", " ").split()
    assert wrap_title("frozen · 1234") == "frozen · 1234"
    assert all(len(line) <= 10 for line in wrap_title("averyveryverylongword", 10).split("<br>"))
    short, long = confusion_figure(report(), "frozen · 1234"), confusion_figure(report(), title)
    assert long.layout.title.text == wrapped
    assert long.layout.margin.t > short.layout.margin.t, "room above the matrix for every line"


def test_answer_bars_keep_their_percentages_readable_and_show_the_threshold():
    fig = predictions_figure({"run": [Prediction("a", 0.97), Prediction("b", 0.02)]})
    bars = fig.data[0]
    assert bars.textposition == "outside" and bars.cliponaxis is False and bars.constraintext == "none"
    assert bars.textfont.size >= 12, "never shrunk to the bar's thickness"
    assert list(bars.text) == ["2%", "97%"]
    assert not fig.layout.shapes
    with_threshold = predictions_figure({"run": [Prediction("a", 0.4)]}, threshold=0.6)
    assert [shape.x0 for shape in with_threshold.layout.shapes] == [0.6]


def test_per_class_bars_show_the_score_asked_for_or_all_three_in_rows():
    reports = {"x": report(), "y": EvalReport(0.5, 2, 1.0, [ClassMetrics("a", 0.25, 0.75, 0.375, 2),
                                                            ClassMetrics("b", 0.8, 0.4, 0.53, 1)],
                                              {"f1": 0.45}, {"f1": 0.45}, [[1, 1], [0, 1]], ["a", "b"])}
    for metric, expected in (("precision", [[1, 0.5], [0.25, 0.8]]), ("recall", [[0.5, 1], [0.75, 0.4]]),
                             ("f1", [[0.67, 0.67], [0.375, 0.53]])):
        fig = per_class_f1_figure(reports, metric)
        assert [list(bar.y) for bar in fig.data] == expected
        assert [bar.name for bar in fig.data] == ["x", "y"]
        assert fig.layout.yaxis.title.text == PER_CLASS_METRICS[metric]
    assert per_class_f1_figure(reports).layout.title.text == "F1 per class", "F1 unless asked"

    every = per_class_f1_figure(reports, ALL_PER_CLASS)
    assert [(bar.yaxis, bar.name) for bar in every.data] == [
        (axis, name) for axis in ("y", "y2", "y3") for name in ("x", "y")]
    assert [list(bar.y) for bar in every.data[::2]] == [[1, 0.5], [0.5, 1], [0.67, 0.67]]
    assert [bar.showlegend for bar in every.data] == [True, True, False, False, False, False]
    titles = [every.layout[axis].title.text for axis in ("yaxis", "yaxis2", "yaxis3")]
    assert titles == ["Precision", "Recall", "F1"]
    assert every.data[0].marker.color == every.data[2].marker.color, "a run keeps its colour in every row"
    with pytest.raises(ConfigError, match="no per-class 'accuracy' score"):
        per_class_f1_figure(reports, "accuracy")
