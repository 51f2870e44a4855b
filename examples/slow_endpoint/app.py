"""An app whose endpoint sleeps for {"seconds": N} (default 1), for drain and timeout tests."""

from __future__ import annotations

import time

from dashboard.sdk import App, endpoint


class SlowEndpoint(App):
    max_multiplexing = 1

    @endpoint("/")
    def slow(self, data: dict) -> dict:
        seconds = float(data.get("seconds", 1))
        time.sleep(seconds)
        return {"slept": seconds}

    def teardown(self) -> None:
        print("teardown: goodbye", flush=True)
