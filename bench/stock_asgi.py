"""Switchboard's ASGI application with Django's own middleware handling, for the
side-by-side poll in bench/run.py (`web_stacks`): dashboard/asgi.py runs the whole
middleware chain and the view in one thread; here Django's ASGIHandler alternates
between the event loop and a thread, as it does for sync middleware and views."""

from django.core.handlers.asgi import ASGIHandler

from dashboard.asgi import Handler


class DjangosChain(Handler):
    load_middleware = ASGIHandler.load_middleware


application = DjangosChain()
