"""An app whose endpoint sleeps for {"seconds": N} (default 1), for drain and timeout tests.

Each answer also says how many requests this runner was handling at once, so a test can
see that the gateway never sent it more than max_multiplexing.
"""

from __future__ import annotations

import threading
import time

from dashboard.sdk import App, endpoint


class SlowEndpoint(App):
    max_multiplexing = 1

    def setup(self) -> None:
        self.lock = threading.Lock()
        self.running = 0

    @endpoint("/")
    def slow(self, data: dict) -> dict:
        seconds = float(data.get("seconds", 1))
        with self.lock:
            self.running += 1
            concurrent = self.running
        try:
            time.sleep(seconds)
        finally:
            with self.lock:
                self.running -= 1
        return {"slept": seconds, "concurrent": concurrent}

    def teardown(self) -> None:
        print("teardown: goodbye", flush=True)
