"""The CLI reads the API's answers by the names the API sends: every field name it reads
from an answer is a property the generated document declares (or a parameter's name, the
keys of an app's settings). A guessed name (`is_current`, `revision_id`, `warnings`, which
the API never sent) fails here, not silently in front of a user."""

from __future__ import annotations

import re
from pathlib import Path

from dashboard.cli import main as cli
from dashboard.controlplane import parameters, rules
from dashboard.controlplane.api.contract import document

CLI = Path(cli.__file__).parent
# Keys of an operation's `result`, which each kind fills with its own (a deploy's says
# whether it was promoted); the document declares `result` as an object.
RESULT_KEYS = {"promoted"}


def _declared() -> set[str]:
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                names.update(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document())
    return names


def test_every_field_the_cli_reads_is_one_the_api_declares():
    source = "\n".join(p.read_text() for p in (CLI / "main.py", CLI / "output.py"))
    read = set(re.findall(r'\.get\("([a-z_0-9]+)"', source)) | set(
        re.findall(r'\["([a-z_0-9]+)"\]', source)
    )
    unknown = read - _declared() - set(parameters.PARAMETERS) - RESULT_KEYS
    assert not unknown, f"the CLI reads fields the API does not send: {sorted(unknown)}"


def test_the_cli_offers_the_apis_page_size_and_no_more():
    pages = document()["components"]["schemas"]["PageQuery"]["properties"]["page_size"]
    assert pages["maximum"] == rules.MAX_PAGE_SIZE
    source = (CLI / "main.py").read_text()
    assert "IntRange(1, 200)" not in source and "IntRange(1, 500)" not in source
    assert source.count("IntRange(1, rules.MAX_PAGE_SIZE)") >= 3
