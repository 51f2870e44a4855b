"""An app whose setup() takes SETUP_SECONDS, like one that loads a large model."""

from __future__ import annotations

import time

from dashboard.sdk import App, endpoint

SETUP_SECONDS = 3.0


class SlowSetup(App):
    startup_timeout = 60

    def setup(self) -> None:
        time.sleep(SETUP_SECONDS)
        self.loaded_after = SETUP_SECONDS

    @endpoint("/")
    def hello(self, data: dict) -> dict:
        return {"loaded_after": self.loaded_after}
