"""Logging filters for the web process."""

from __future__ import annotations

import logging


class No4xxTracebacks(logging.Filter):
    """A refused request (a 4xx, such as 403) is the caller's mistake, not the server's.
    Django logs a PermissionDenied with its traceback, which buried real errors in web.log;
    the one line that says what was refused stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if 400 <= getattr(record, "status_code", 0) < 500:
            record.exc_info, record.exc_text = None, None
        return True
