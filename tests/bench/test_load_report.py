"""The load test's figures: percentiles, table rows and verdicts."""

import load_sessions as load


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert load.percentile(values, 50) == 10.0
    assert load.percentile(values, 95) == 19.0
    assert load.percentile(values, 100) == 20.0
    assert load.percentile([3.0], 95) == 3.0


def test_stats_are_dashes_when_nothing_was_measured():
    assert load.stats([]) == ["-", "-", "-"]
    assert load.stats([0.5, 1.5]) == ["0.50", "1.50", "1.50"]


def test_rows_add_all_page_renders_after_the_pages_with_their_failures():
    samples = load.Samples()
    samples.add("load home", 0.2)
    samples.add("switch compare", 0.4)
    samples.fail("switch train", TimeoutError("no answer in 60 s"))
    samples.fail("switch train", ValueError("a later failure"))
    samples.add("classify upload", 0.3)
    rows = load.table_rows(samples, cold={"load home": [1.25]})
    by_label = {row[0]: row for row in rows}
    assert [row[0] for row in rows] == [*load.PAGE_LABELS, "all page renders", "classify upload",
                                       "sidebar refresh"]
    assert by_label["load home"][1:] == [1, 0, "0.20", "0.20", "0.20", "1.25"]
    assert by_label["switch train"][1:] == [0, 2, "-", "-", "-", "-"]
    assert by_label["all page renders"][2] == 2
    assert samples.reasons == {"switch train": "TimeoutError: no answer in 60 s"}


def test_rows_for_other_labels_have_no_page_total():
    samples = load.Samples()
    samples.add("predict", 0.01)
    assert [row[0] for row in load.table_rows(samples, {}, labels=["predict"])] == ["predict"]


def test_verdicts_compare_p95_with_the_target_and_nothing_measured_is_not_met():
    lines = load.verdicts({"fast": [0.1] * 20, "slow": [0.1] * 18 + [3.0] * 2, "none": []})
    assert lines[0].startswith("fast") and lines[0].endswith(": MET")
    assert lines[1].endswith("NOT MET") and "3.00 s" in lines[1]
    assert lines[2].endswith("NOT MET") and "inf" in lines[2]


def test_a_phase_report_is_its_title_table_and_first_failures():
    phase = load.Phase("predict", "phase 3: 2 threads", labels=["predict"])
    phase.samples.add("predict", 0.02)
    phase.samples.fail("predict", RuntimeError("model gone"))
    lines = phase.report().splitlines()
    assert lines[0] == "phase 3: 2 threads"
    assert lines[1].startswith("| what") and lines[3].startswith("| predict | 1 ")
    assert lines[-1] == "first failure of predict: RuntimeError: model gone"
