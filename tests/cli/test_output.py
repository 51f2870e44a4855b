"""The CLI's plain-text output: relative times, tables and progress lines."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.cli import output
from dashboard.cli.main import summarise

NOW = datetime(2025, 11, 26, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (timedelta(seconds=3), "just now"),
        (timedelta(seconds=42), "42 seconds ago"),
        (timedelta(minutes=1, seconds=5), "1 minute ago"),
        (timedelta(hours=5), "5 hours ago"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=800), "2 years ago"),
        (-timedelta(minutes=3), "in 3 minutes"),
    ],
)
def test_relative_time_reads_naturally(ago, text):
    assert output.relative(NOW - ago, now=NOW) == text


def test_absolute_time_is_shown_in_utc():
    moment = output.parse_time("2025-11-26T13:04:05+01:00")

    assert output.absolute(moment) == "2025-11-26 12:04:05 UTC"


def test_times_without_a_zone_are_taken_as_utc_and_garbage_as_unknown():
    assert output.parse_time("2025-11-26T12:00:00Z") == NOW
    assert output.parse_time("2025-11-26T12:00:00") == NOW
    assert output.parse_time("yesterday") is None
    assert output.relative(None) == "-"


def test_a_table_aligns_columns_and_marks_missing_values():
    text = output.table(("id", "status"), [("abcdef12", "Deployed"), ("12", None)])

    assert text.splitlines() == ["ID        STATUS", "abcdef12  Deployed", "12        -"]


def test_a_multiline_message_stays_on_one_row_and_long_cells_are_cut():
    text = output.table(("message",), [("first line\nsecond line",), ("x" * 100,)], max_width=20)

    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[1] == "first line second l…"
    assert lines[2] == "x" * 19 + "…"


def test_a_progress_line_starts_with_the_local_clock_time():
    line = output.progress_line("2025-11-26T12:00:00+00:00", "runner healthy")

    assert re.fullmatch(r"\d\d:\d\d:\d\d  runner healthy", line)
    assert line[:8] == NOW.astimezone().strftime("%H:%M:%S")


def test_short_ids_are_eight_hex_characters():
    assert output.short_id("3f2a9c1e-0000-4000-8000-000000000000") == "3f2a9c1e"
    assert output.short_id(None) == "-"


def test_durations_pick_a_readable_unit():
    assert output.duration(0.25) == "250 ms"
    assert output.duration(3.25) == "3.2s"
    assert output.duration(12.34) == "12s"
    assert output.duration(125) == "2m 5s"
    assert output.duration(7260) == "2h 1m"
    assert output.duration(None) == "-"


def test_a_failed_operations_traceback_is_summarised_by_its_first_and_last_lines():
    error = (
        "runner r-1 failed: setup failed: Traceback (most recent call last):\n"
        '  File "app.py", line 11, in setup\n'
        "RuntimeError: model file weights.bin is missing\n"
    )

    assert summarise(error) == (
        "runner r-1 failed: setup failed: Traceback (most recent call last): … "
        "RuntimeError: model file weights.bin is missing"
    )
    assert summarise("import failed") == "import failed"
    assert summarise("") == "no reason given"


def test_a_paged_listing_says_where_its_page_is():
    from dashboard.cli.main import page_note

    assert page_note({"count": 4, "page": 1, "page_size": 50}, "revisions") is None
    assert (
        page_note({"count": 64, "page": 1, "page_size": 50}, "operations")
        == "page 1 of 2 (64 operations); --page 2 for more"
    )
    assert page_note({"count": 64, "page": 2, "page_size": 50}, "operations") == (
        "page 2 of 2 (64 operations)"
    )
    # An empty page past the end is not "no operations".
    assert page_note({"count": 64, "page": 99, "page_size": 50}, "operations") == (
        "page 99 is past the end: 64 operations on 2 page(s)"
    )
    assert page_note({"count": 0, "page": 3, "page_size": 50}, "revisions") == (
        "page 3 is past the end: there are no revisions"
    )
