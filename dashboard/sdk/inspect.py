"""Import check: `python -m dashboard.sdk.inspect BUNDLE_DIR ENTRYPOINT`.

Prints one JSON object: {"ok": true, "settings": {...}, "endpoints": [...]} or
{"ok": false, "error": "..."} with the traceback's last lines. Exit code 0 either way
unless the interpreter itself failed; the caller enforces a timeout.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from dashboard.sdk.loader import describe, load_app_class


def main(argv: list[str]) -> int:
    bundle_dir, entrypoint = Path(argv[1]), argv[2]
    try:
        result = {"ok": True, **describe(load_app_class(bundle_dir, entrypoint))}
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, even SystemExit.
        tb = traceback.format_exception(exc)
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(tb[-6:]),
        }
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
