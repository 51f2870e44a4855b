from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def test_every_answer_says_how_long_the_server_spent(viewer, client):
    for response in (viewer.get("/"), client.get("/login/"), client.get("/no-such-page")):
        assert re.fullmatch(r"app;dur=\d+\.\d\d", response["Server-Timing"])
