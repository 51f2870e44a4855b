#!/usr/bin/env python
"""Two benchmark runs side by side: `make bench-compare [A=run.json] [B=run.json]`.

    .venv/bin/python bench/compare.py [A] [B]

A and B are results files written by bench/run.py (bench/results/*.json). Without B, B is
the newest run; without A, A is the run before B. An empty argument counts as omitted, so
the Makefile can pass "$(A)" "$(B)" as they are.

Each figure's values are printed for A and B with the ratio B/A. A ratio that moved more
than --threshold (10 % by default) in the figure's worse direction is marked "worse", in
its better direction "better"; these machines are noisy, so one such mark is a reason to
rerun, not yet a regression.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def load(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"bench/compare.py: cannot read {path}: {error}") from None
    if not isinstance(record, dict) or "figures" not in record:
        raise SystemExit(f"bench/compare.py: {path} is not a results file of bench/run.py")
    return record


def runs_by_date(folder: Path) -> list[Path]:
    """The results files in folder, oldest first (by the date each records)."""
    return sorted(folder.glob("*.json"), key=lambda path: (load(path)["date"], path.name))


def pick(a: str, b: str, folder: Path) -> tuple[Path, Path]:
    if a and b:
        return Path(a), Path(b)
    runs = runs_by_date(folder)
    if b:
        b_path = Path(b)
        older = [run for run in runs if load(run)["date"] < load(b_path)["date"]]
        if not older:
            raise SystemExit(f"bench/compare.py: no run in {folder} is older than {b}")
        return older[-1], b_path
    if a:
        others = [run for run in runs if run.resolve() != Path(a).resolve()]
        if not others:
            raise SystemExit(f"bench/compare.py: no other run in {folder} to compare {a} with")
        return Path(a), others[-1]
    if len(runs) < 2:
        raise SystemExit(
            f"bench/compare.py: {len(runs)} run(s) in {folder}; `make bench` makes one"
        )
    return runs[-2], runs[-1]


def describe(record: dict) -> str:
    commit, machine, run = record["commit"], record["machine"], record["run"]
    code = (commit["sha"] or "no commit")[:10] + (" with changes" if commit["dirty"] else "")
    if commit.get("subject"):
        code += f" ({commit['subject'][:50]})"
    scope = ("quick" if run.get("quick") else "full") + f" run, {run.get('samples')} samples"
    if run.get("only"):
        scope += f", --only {run['only']}"
    load = run.get("load_average") or ["?"]
    return (
        f"{record['date']}  {code}\n"
        f"     {scope}, load {load[0]} at the start\n"
        f"     {machine['hostname']}: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, Python {machine['python']}"
    )


def number(value: float | int | None, digits: int) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, int) else f"{value:,.{digits}f}"


def verdict(ratio: float, better: str, threshold: float) -> str:
    if abs(ratio - 1) <= threshold:
        return ""
    return "worse" if (ratio > 1) == (better == "lower") else "better"


def rows(a: dict, b: dict, threshold: float) -> list[tuple[str, ...]]:
    """One row per value of every figure in A or B: group, figure, value, A, B, B/A, mark."""
    a_figures = {f["name"]: f for f in a["figures"]}
    b_figures = {f["name"]: f for f in b["figures"]}
    # B's order, then figures only A has (a benchmark removed since) at the end of their
    # group; the sort is stable, so the order within a group is kept.
    names = list(b_figures) + [name for name in a_figures if name not in b_figures]
    groups = list(dict.fromkeys((b_figures.get(n) or a_figures[n])["group"] for n in names))
    names.sort(key=lambda n: groups.index((b_figures.get(n) or a_figures[n])["group"]))
    table = []
    for name in names:
        fa, fb = a_figures.get(name), b_figures.get(name)
        figure = fb or fa
        labels = list(figure["values"]) + [
            label for label in (fa or {}).get("values", {}) if label not in figure["values"]
        ]
        for label in labels:
            va = fa["values"].get(label) if fa else None
            vb = fb["values"].get(label) if fb else None
            ratio, mark = "—", ""
            if va is not None and vb is not None and va != 0:
                ratio = f"{vb / va:.2f}"
                mark = verdict(vb / va, figure.get("better", "lower"), threshold)
            digits = figure["digits"]
            table.append(
                (figure["group"], name, label, number(va, digits), number(vb, digits), ratio, mark)
            )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", nargs="?", default="", help="the earlier run (a results file)")
    parser.add_argument("b", nargs="?", default="", help="the later run (a results file)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--threshold", type=float, default=0.10)
    args = parser.parse_args(argv)
    a_path, b_path = pick(args.a, args.b, args.results)
    a, b = load(a_path), load(b_path)
    print(f"A    {a_path}\n     {describe(a)}")
    print(f"B    {b_path}\n     {describe(b)}")
    if (a["machine"]["hostname"], a["machine"]["cpu"]) != (
        b["machine"]["hostname"],
        b["machine"]["cpu"],
    ):
        print("Note: different machines; the ratios compare the machines as well as the code.")
    if (a["run"].get("quick"), a["run"].get("samples")) != (
        b["run"].get("quick"),
        b["run"].get("samples"),
    ):
        print("Note: different sample counts (--quick); p90s of small samples move more.")

    table = rows(a, b, args.threshold)
    width = max([len(name) for _, name, *_ in table] + [6])
    label_width = max([len(label) for _, _, label, *_ in table] + [5])
    group = last_name = None
    print(f"\n{'figure':<{width}}  {'value':<{label_width}}  {'A':>10}  {'B':>10}  {'B/A':>5}")
    for row_group, name, label, va, vb, ratio, mark in table:
        if row_group != group:
            group = row_group
            print(f"\n{group}")
        # A figure's name is printed on its first value's line only.
        shown = "" if name == last_name else name
        last_name = name
        line = f"{shown:<{width}}  {label:<{label_width}}  {va:>10}  {vb:>10}  {ratio:>5}  {mark}"
        print(line.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
