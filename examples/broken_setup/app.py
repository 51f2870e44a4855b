"""An app whose setup() raises: its revision ends Failed, with this error in the log."""

from __future__ import annotations

from dashboard.sdk import App, endpoint


class BrokenSetup(App):
    def setup(self) -> None:
        print("loading the model...")
        raise RuntimeError("model file weights.bin is missing")

    @endpoint("/")
    def hello(self, data: dict) -> dict:
        return {"unreachable": True}
