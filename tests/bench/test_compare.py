"""bench/compare.py on synthetic results files: the ratios it prints and the runs it picks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import compare


def figure(group: str, name: str, values: dict, *, digits: int = 0, better: str = "lower"):
    return {
        "group": group,
        "name": name,
        "values": values,
        "digits": digits,
        "goal": "",
        "better": better,
    }


def write_run(folder: Path, filename: str, date: str, figures: list[dict]) -> Path:
    record = {
        "format": 1,
        "date": date,
        "commit": {"sha": "0123456789abcdef", "subject": "a commit", "dirty": False},
        "machine": {
            "hostname": "bench-box",
            "cpu": "Test CPU",
            "cores": 2,
            "memory_gib": 4.0,
            "python": "3.12.1",
            "system": "Linux",
        },
        "run": {"only": None, "quick": True, "samples": 5, "load_average": [0.5, 0.5, 0.5]},
        "figures": figures,
    }
    path = folder / filename
    path.write_text(json.dumps(record))
    return path


def table_lines(output: str) -> dict[tuple[str, str], list[str]]:
    """The table's value rows as {(figure, value label): [A, B, B/A, mark...]}."""
    rows, name = {}, ""
    for line in output.split("\nfigure", 1)[1].splitlines()[1:]:
        cells = [cell for cell in line.split("  ") if cell.strip()]
        if len(cells) < 4:  # A group heading or a blank line.
            continue
        if not line.startswith(" "):
            name = cells.pop(0).strip()
        rows[(name, cells[0].strip())] = [cell.strip() for cell in cells[1:]]
    return rows


def test_it_prints_both_runs_values_with_the_ratio_b_over_a(tmp_path, capsys):
    a = write_run(
        tmp_path,
        "a.json",
        "2026-11-01T10:00:00+00:00",
        [
            figure("Platform", "cold start (ms)", {"p50": 100.0, "p90": 200.0}),
            figure("Platform", "throughput (req/s)", {"value": 1000.0}, better="higher"),
            figure(
                "Dashboard", "Versions page (ms, queries)", {"p50": 4.0, "queries": 7}, digits=1
            ),
            figure("Dashboard", "removed since (ms)", {"p50": 3.0}),
        ],
    )
    b = write_run(
        tmp_path,
        "b.json",
        "2026-11-02T10:00:00+00:00",
        [
            figure("Platform", "cold start (ms)", {"p50": 50.0, "p90": 300.0}),
            figure("Platform", "throughput (req/s)", {"value": 800.0}, better="higher"),
            figure(
                "Dashboard", "Versions page (ms, queries)", {"p50": 4.2, "queries": 7}, digits=1
            ),
            figure("Dashboard", "new in B (ms)", {"p50": 9.0}),
        ],
    )

    assert compare.main([str(a), str(b)]) == 0

    output = capsys.readouterr().out
    assert output.startswith(f"A    {a}\n")
    assert f"B    {b}\n" in output
    rows = table_lines(output)
    assert rows[("cold start (ms)", "p50")] == ["100", "50", "0.50", "better"]
    assert rows[("cold start (ms)", "p90")] == ["200", "300", "1.50", "worse"]
    # Higher is better for a throughput, so a lower B is the worse one.
    assert rows[("throughput (req/s)", "value")] == ["1,000", "800", "0.80", "worse"]
    # Within the 10 % threshold: a ratio, no mark.
    assert rows[("Versions page (ms, queries)", "p50")] == ["4.0", "4.2", "1.05"]
    assert rows[("Versions page (ms, queries)", "queries")] == ["7", "7", "1.00"]
    # A figure only one run has is shown with a dash on the other side and no ratio.
    assert rows[("new in B (ms)", "p50")] == ["—", "9", "—"]
    assert rows[("removed since (ms)", "p50")] == ["3", "—", "—"]


def test_without_arguments_it_compares_the_two_newest_runs(tmp_path, capsys):
    # The file names sort the other way round: the dates inside decide.
    newest = write_run(tmp_path, "1.json", "2026-11-03T10:00:00+00:00", [])
    before = write_run(tmp_path, "2.json", "2026-11-02T10:00:00+00:00", [])
    write_run(tmp_path, "3.json", "2026-11-01T10:00:00+00:00", [])

    assert compare.main(["", "", "--results", str(tmp_path)]) == 0

    output = capsys.readouterr().out
    assert f"A    {before}\n" in output
    assert f"B    {newest}\n" in output


def test_with_only_b_given_a_is_the_run_before_it(tmp_path, capsys):
    write_run(tmp_path, "new.json", "2026-11-03T10:00:00+00:00", [])
    b = write_run(tmp_path, "mid.json", "2026-11-02T10:00:00+00:00", [])
    a = write_run(tmp_path, "old.json", "2026-11-01T10:00:00+00:00", [])

    assert compare.main(["", str(b), "--results", str(tmp_path)]) == 0

    output = capsys.readouterr().out
    assert f"A    {a}\n" in output
    assert f"B    {b}\n" in output


def test_it_refuses_a_file_that_is_not_a_results_file(tmp_path):
    a = write_run(tmp_path, "a.json", "2026-11-01T10:00:00+00:00", [])
    other = tmp_path / "package.json"
    other.write_text('{"name": "not a benchmark"}')

    with pytest.raises(SystemExit) as refused:
        compare.main([str(a), str(other)])

    assert str(refused.value) == f"bench/compare.py: {other} is not a results file of bench/run.py"


def test_with_fewer_than_two_runs_it_says_how_to_make_one(tmp_path):
    write_run(tmp_path, "only.json", "2026-11-01T10:00:00+00:00", [])

    with pytest.raises(SystemExit) as refused:
        compare.main(["--results", str(tmp_path)])

    assert str(refused.value) == (
        f"bench/compare.py: 1 run(s) in {tmp_path}; `make bench` makes one"
    )
