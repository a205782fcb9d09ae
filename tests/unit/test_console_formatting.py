"""The console's pure helpers: times, durations, capped counts, JSON folding, chart geometry, percentiles."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from taskservice.console.charts import HEIGHT, count_ticks, durations_chart, nice_ceiling, per_minute_chart
from taskservice.console.formatting import abstime, capped, duration, is_large, pretty_json, reltime
from taskservice.ledger.states import Status
from taskservice.ledger.stats import FunctionHealth, MinuteBucket, percentile

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


def test_relative_and_absolute_times() -> None:
    assert reltime(NOW, NOW) == "just now"
    assert reltime(NOW - timedelta(seconds=12), NOW) == "12 s ago"
    assert reltime(NOW - timedelta(minutes=3, seconds=50), NOW) == "3 min ago"
    assert reltime(NOW - timedelta(hours=5), NOW) == "5 h ago"
    assert reltime(NOW - timedelta(days=2), NOW) == "2 d ago"
    assert reltime(NOW + timedelta(seconds=4), NOW) == "in 4 s"
    assert reltime(None) == "—"
    assert abstime(NOW) == "2026-11-22 12:00:00.000 UTC"


def test_durations_read_naturally() -> None:
    assert duration(0.0123) == "12 ms"
    assert duration(3.25) == "3.2 s"
    assert duration(125) == "2 min 5 s"
    assert duration(7500) == "2 h 5 min"
    assert duration(None) == "—"


def test_counts_above_the_cap_say_so() -> None:
    assert capped(9999, 10_000) == "9,999"
    assert capped(10_000, 10_000) == "10,000"
    assert capped(10_001, 10_000) == "10,000+"


def test_json_is_indented_and_large_documents_fold() -> None:
    assert pretty_json('{"a":[1,2]}') == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert pretty_json("not json") == "not json"
    assert pretty_json(None) == ""
    assert not is_large(pretty_json('{"a": 1}'))
    assert is_large(pretty_json('{"a": "' + "x" * 3000 + '"}'))
    assert is_large(pretty_json("[" + ",".join(["1"] * 50) + "]"))  # many lines


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.95) == 95
    assert percentile([7.0], 0.95) == 7 and percentile([], 0.5) is None


def test_axis_tops_are_round() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 12, 480, 5001)] == [1, 1, 5, 10, 20, 500, 10000]


def test_count_ticks_are_whole_round_steps_from_zero_to_the_peak() -> None:
    assert count_ticks(0) == count_ticks(1) == [0, 1]  # was 0, 0.5, 1 printed as "0, 0, 1"
    assert count_ticks(4) == [0, 1, 2, 3, 4]
    assert count_ticks(5) == count_ticks(6) == [0, 2, 4, 6]
    assert count_ticks(9) == [0, 5, 10]
    assert count_ticks(37) == [0, 10, 20, 30, 40]
    assert count_ticks(41) == [0, 20, 40, 60]
    assert count_ticks(1234) == [0, 500, 1000, 1500]
    for peak in range(0, 5001, 7):
        ticks = count_ticks(peak)
        step = ticks[1]
        assert ticks[0] == 0 and ticks[-1] >= peak and 2 <= len(ticks) <= 5
        assert ticks == [i * step for i in range(len(ticks))]
        assert int(str(step).rstrip("0") or 0) in (1, 2, 5)  # 1, 2 or 5 times a power of ten
        assert ticks[-2] < max(peak, 1)  # no tick wasted above the peak


def test_per_minute_axis_labels_are_distinct_and_match_the_bars() -> None:
    one = per_minute_chart([MinuteBucket(NOW, {Status.SUCCEEDED: 1}), MinuteBucket(NOW, {Status.FAILED: 1})])
    assert [label for _y, label in one.y_ticks] == ["0", "1"]
    six = per_minute_chart([MinuteBucket(NOW, {Status.SUCCEEDED: 4}), MinuteBucket(NOW, {Status.FAILED: 2})])
    assert [label for _y, label in six.y_ticks] == ["0", "1", "2", "3", "4"]
    top_y = min(y for y, _label in six.y_ticks)
    assert min(b.y for b in six.bars) == top_y  # the busiest bar reaches exactly the "4" grid line


def test_per_minute_bars_stack_by_status_within_the_plot() -> None:
    buckets = [MinuteBucket(NOW + timedelta(minutes=i), {Status.SUCCEEDED: i, Status.FAILED: 1}) for i in range(10)]
    chart = per_minute_chart(buckets)
    assert not chart.empty and chart.y_ticks[-1][1] == "10"  # 9 + 1 at the busiest minute
    last = [b for b in chart.bars if "12:09" in b.title]
    assert {b.css for b in last} == {"st-fill-Succeeded", "st-fill-Failed"}
    assert all(0 <= b.y and b.y + b.h <= HEIGHT for b in chart.bars)
    assert per_minute_chart([MinuteBucket(NOW, {})]).empty


def test_duration_rows_put_p50_over_p95() -> None:
    chart = durations_chart([FunctionHealth("a", 10, 9, 1.0, 4.0), FunctionHealth("b", 0, 0, None, None)])
    assert [label for _y, label in chart.row_labels] == ["a"]
    p95, p50 = chart.bars
    assert p95.css == "p95" and p50.css == "p50" and p50.w < p95.w
