"""The benchmarks' app: empty setup(), an instant endpoint, one runner that takes many requests.

VERSION is rewritten per revision by bench/run.py so every revision answers differently.
"""

from __future__ import annotations

from dashboard.sdk import App, endpoint

VERSION = "echo"


class Echo(App):
    keep_alive = 3600
    min_concurrency = 0
    max_concurrency = 2
    max_multiplexing = 64
    startup_timeout = 60

    @endpoint("/")
    def hello(self, data: dict) -> dict:
        return {"version": VERSION}
