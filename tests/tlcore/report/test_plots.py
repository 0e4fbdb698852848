from tlcore.records import EpochRecord
from tlcore.report.evaluate import ClassMetrics, EvalReport, Prediction
from tlcore.report.plots import (
    class_counts_figure,
    comparison_figure,
    confusion_figure,
    history_figure,
    history_frame,
    per_class_f1_figure,
    predictions_figure,
    stage_boundaries,
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
