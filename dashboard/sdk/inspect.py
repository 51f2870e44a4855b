"""Import check: `python -m dashboard.sdk.inspect BUNDLE_DIR ENTRYPOINT [LIMITS_JSON]`.

Prints one JSON object: {"ok": true, "settings": {...}, "endpoints": [...]} or
{"ok": false, "error": "..."} with the traceback's last lines, both bounded (ERROR_CHARS,
TRACEBACK_CHARS): what the code raised is reported, but never more than that much of it.
Exit code 0 either way unless the interpreter itself failed; the caller enforces a
timeout. It runs in the runner sandbox, under the resource limits given.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from dashboard.sdk.loader import apply_limits, describe, load_app_class

ERROR_CHARS = 500
TRACEBACK_CHARS = 2000


def main(argv: list[str]) -> int:
    bundle_dir, entrypoint = Path(argv[1]), argv[2]
    if len(argv) > 3:
        apply_limits(json.loads(argv[3]))
    try:
        result = {"ok": True, **describe(load_app_class(bundle_dir, entrypoint))}
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, even SystemExit.
        tb = traceback.format_exception(exc)
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}"[:ERROR_CHARS],
            "traceback": "".join(tb[-6:])[-TRACEBACK_CHARS:],
        }
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
