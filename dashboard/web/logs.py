"""Logging filters for the web process."""

from __future__ import annotations

import logging


class No4xxTracebacks(logging.Filter):
    """A refused request (403, 404) is the caller's mistake, not the server's. Django logs
    it with the traceback of the exception that refused it, which buried real errors in
    web.log; the one line that says what was refused stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if 400 <= getattr(record, "status_code", 0) < 500:
            record.exc_info, record.exc_text = None, None
        return True
