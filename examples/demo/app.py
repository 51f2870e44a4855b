"""The demo app of the Quick start: a friendly greeting that says which revision answered.

Deploy it, change VERSION, deploy again, and roll back: the greeting follows the alias.
"""

from __future__ import annotations

from dashboard.sdk import App, endpoint

VERSION = "1"


class Demo(App):
    keep_alive = 60
    max_multiplexing = 4

    def setup(self) -> None:
        self.greeting = "Hello"

    @endpoint("/")
    def greet(self, data: dict) -> dict:
        name = str(data.get("name", "world"))[:100]
        return {"message": f"{self.greeting}, {name}!", "version": VERSION}

    @endpoint("/version", methods=("GET",))
    def version(self) -> dict:
        return {"version": VERSION}
