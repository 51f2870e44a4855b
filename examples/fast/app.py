"""A fast app: no setup work, answers at once with the text that tells its revision."""

from __future__ import annotations

from dashboard.sdk import App, endpoint

VERSION = "fast v1"


class Fast(App):
    keep_alive = 30

    @endpoint("/")
    def hello(self, data: dict) -> dict:
        return {"version": VERSION, "echo": data}

    @endpoint("/pid", methods=("GET",))
    def pid(self) -> dict:
        import os

        return {"pid": os.getpid()}
