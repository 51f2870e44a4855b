"""The SDK app authors write against.

from dashboard.sdk import App, endpoint

class MyApp(App):
    machine_type = "S"
    keep_alive = 300

    def setup(self) -> None:
        self.model = load_model()

    @endpoint("/")
    def predict(self, data: dict) -> dict:
        return {"answer": self.model(data["question"])}
"""

from __future__ import annotations

from dashboard.sdk.app import App, endpoint

__all__ = ["App", "endpoint"]
