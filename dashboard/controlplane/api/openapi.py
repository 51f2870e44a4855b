"""The control API's OpenAPI 3.1 document, written by hand next to the views it describes.

tests/controlplane/test_openapi.py checks that every URL route appears here.
"""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "404": {"$ref": "#/components/responses/NotFound"},
}
CONFLICT = {
    "409": {"$ref": "#/components/responses/Conflict"},
    "422": {"$ref": "#/components/responses/KeyReused"},
}
UNAVAILABLE = {"503": {"$ref": "#/components/responses/Unavailable"}}
OP_ACCEPTED = {
    "202": _json({"type": "object", "properties": {"operation": _ref("Operation")}}, "Accepted"),
    "200": _json(
        {"type": "object", "properties": {"operation": _ref("Operation")}},
        "Already finished (a replay of the same Idempotency-Key)",
    ),
}
OP_DONE = {
    "200": _json(
        {"type": "object", "properties": {"operation": _ref("Operation")}},
        "Done (quick operations complete in the request and are still recorded)",
    )
}
PIN_DONE = {
    "200": _json(
        {
            "type": "object",
            "properties": {"operation": _ref("Operation"), "revision": _ref("Revision")},
        },
        "Done: a pin or unpin operation, and the revision as it is now",
    )
}
IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Same requester, key, method, path and body return the original operation; nothing "
        "applies twice. The key on a different request is refused: 422 idempotency_key_reused."
    ),
    "schema": {"type": "string", "maxLength": 200},
}
SOURCE = {
    "name": "X-Switchboard-Source",
    "in": "header",
    "required": False,
    "description": (
        "Recorded on the operation. `dashboard` is the dashboard's worker (sbd_ tokens, "
        "recorded as such whatever they send); an API token claiming it gets 403 "
        "source_not_allowed."
    ),
    "schema": {"type": "string", "enum": ["cli", "dashboard", "api"], "default": "api"},
}
APP = {"name": "app", "in": "path", "required": True, "schema": {"type": "string"}}
REV = {
    "name": "rev",
    "in": "path",
    "required": True,
    "description": "Full revision id or a unique prefix of at least 8 hex characters.",
    "schema": {"type": "string"},
}
RUNNER = {"name": "runner_id", "in": "path", "required": True, "schema": {"type": "string"}}
PAGE = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {
        "name": "page_size",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
]
REASON = {"reason": {"type": "string", "maxLength": 5000}}
EXPECTED_CURRENT = {
    "expected_current": {
        "type": ["string", "null"],
        "description": (
            "The revision (id or unique prefix) the requester saw as Current. If Current is "
            "another one now, nothing changes and the answer is 409 current_changed, whose "
            "details say who changed it (changed_by), to what (current) and when (changed_at)."
        ),
    }
}


def _body(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    # Any other field is refused: 400 unknown_field, naming it and the allowed ones.
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


def _mutation(summary: str, role: str, body: dict | None, answers: dict, **extra) -> dict:
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Needs the {role} role. Recorded as an operation.",
        "parameters": [IDEMPOTENCY, SOURCE],
        "responses": {**answers, **ERRORS, **CONFLICT, **UNAVAILABLE},
        **extra,
    }
    if body is not None:
        op["requestBody"] = body
    return op


def _paths() -> dict[str, Any]:
    page_of = lambda key, item: {  # noqa: E731 - a tiny local shape builder.
        "type": "object",
        "properties": {
            key: {"type": "array", "items": _ref(item)},
            "count": {"type": "integer"},
            "page": {"type": "integer"},
            "page_size": {"type": "integer"},
            "next": {"type": ["integer", "null"]},
        },
    }
    return {
        "/": {
            "get": {
                "summary": "Where to start: this API's version and its document's address",
                "security": [],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "version": {"type": "string"},
                                "openapi": {"type": "string"},
                            },
                        }
                    )
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/me": {
            "get": {
                "summary": "Who the token belongs to and its effective role",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "username": {"type": "string"},
                                "email": {"type": "string"},
                                "role": {"type": "string"},
                                "source": {"type": "string"},
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/apps": {
            "get": {
                "summary": "Every app with its Current revision and last operation",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"apps": {"type": "array", "items": _ref("App")}},
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        "/apps/{app}": {
            "parameters": [APP],
            "get": {
                "summary": "One app, with revision count and the parameter catalogue",
                "responses": {"200": _json(_ref("App")), **ERRORS},
            },
        },
        "/apps/{app}/revisions": {
            "parameters": [APP],
            "get": {
                "summary": "Revisions, newest first, paginated",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["deploying", "deployed", "failed", "suspended"],
                        },
                    },
                    *PAGE,
                ],
                "responses": {"200": _json(page_of("revisions", "Revision")), **ERRORS},
            },
            "post": _mutation(
                "Deploy: upload a bundle, creating a new revision (and the app on first deploy)",
                "deployer",
                {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["bundle", "entrypoint"],
                                "properties": {
                                    "bundle": {
                                        "type": "string",
                                        "contentMediaType": "application/gzip",
                                        "description": "tar.gz of regular files and directories",
                                    },
                                    "entrypoint": {
                                        "type": "string",
                                        "examples": ["app.py::MyApp"],
                                    },
                                    "strategy": {
                                        "type": "string",
                                        "enum": ["rolling", "recreate"],
                                    },
                                    "reset_scale": {"type": "string", "enum": ["true", "false"]},
                                    "message": {"type": "string"},
                                    "annotations": {
                                        "type": "string",
                                        "description": "JSON object of string to string",
                                    },
                                    "auth_mode": {
                                        "type": "string",
                                        "enum": ["private", "shared", "public"],
                                    },
                                    "promote": {
                                        "type": "string",
                                        "enum": ["true", "false"],
                                        "description": "Make it Current even if the app is "
                                        "held after a rollback (and release the hold). Without "
                                        "it a held app's deploy ends Deployed, not Current, "
                                        "and its result has promoted: false.",
                                    },
                                },
                            }
                        }
                    },
                },
                {
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {
                                "operation": _ref("Operation"),
                                "revision": _ref("Revision"),
                            },
                        },
                        "Accepted: the revision is Deploying",
                    ),
                    "413": {"$ref": "#/components/responses/TooLarge"},
                },
            ),
        },
        "/apps/{app}/revisions/{rev}": {
            "parameters": [APP, REV],
            "get": {
                "summary": "One revision",
                "responses": {"200": _json(_ref("Revision")), **ERRORS},
            },
            "delete": _mutation(
                "Delete a revision that is not Current: stops its runners, removes its bundle",
                "admin",
                _body({**REASON, **EXPECTED_CURRENT}),
                OP_ACCEPTED,
            ),
        },
        "/apps/{app}/revisions/{rev}/pin": {
            "parameters": [APP, REV],
            "post": _mutation(
                "Pin a revision: retention never deletes it and delete-rev refuses it (409 "
                "revision_is_pinned) until it is unpinned. 409 already_pinned if it is.",
                "deployer",
                _body(REASON),
                PIN_DONE,
            ),
        },
        "/apps/{app}/revisions/{rev}/unpin": {
            "parameters": [APP, REV],
            "post": _mutation(
                "Unpin a revision: retention may delete it again once it is old enough. "
                "409 not_pinned if it is not pinned.",
                "deployer",
                _body(REASON),
                PIN_DONE,
            ),
        },
        "/apps/{app}/retention": {
            "parameters": [APP],
            "get": {
                "summary": "The app's retention settings; with dry_run=1 also what retention "
                "would delete now and why every other revision stays (nothing changes)",
                "parameters": [
                    {
                        "name": "dry_run",
                        "in": "query",
                        "schema": {"type": "boolean", "default": False},
                    }
                ],
                "responses": {
                    "200": _json(
                        {"oneOf": [_ref("RetentionSettings"), _ref("RetentionPlan")]},
                        "The settings, or with dry_run the plan",
                    ),
                    **ERRORS,
                },
            },
            "post": _mutation(
                "Change retention: keep the newest `keep` revisions (1-1000, default 20) and "
                "delete older ones after each deploy and periodically (`enabled`, default "
                "true). Never deleted: Current, Previous, pinned revisions, the target of an "
                "operation in progress, the last 3 Deployed. Each deletion is a delete-rev "
                "operation with source `retention`. With dry_run true nothing changes and the "
                "answer is the RetentionPlan of the values given.",
                "admin",
                _body(
                    {
                        "keep": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "enabled": {"type": "boolean"},
                        "dry_run": {"type": "boolean"},
                        **REASON,
                    }
                ),
                {
                    "200": _json(
                        {
                            "oneOf": [
                                {
                                    "type": "object",
                                    "properties": {
                                        "operation": _ref("Operation"),
                                        "retention": _ref("RetentionSettings"),
                                    },
                                },
                                _ref("RetentionPlan"),
                            ]
                        },
                        "Done (a `retention` operation), or with dry_run the plan",
                    )
                },
            ),
        },
        "/apps/{app}/revisions/preview": {
            "parameters": [APP],
            "post": {
                "summary": "Deploy preview: the revision a deploy with this form would create",
                "description": (
                    "Needs the deployer role. Takes the deploy's form; stages the bundle and "
                    "runs the import check as a deploy does, compares it with Current, then "
                    "discards it: nothing is recorded or kept. 422 import_check_failed when "
                    "the deploy would fail."
                ),
                # requestBody: the deploy's own form, set by document().
                "responses": {
                    "200": _json(_ref("DeployPreview")),
                    **ERRORS,
                    "413": {"$ref": "#/components/responses/TooLarge"},
                    "422": _error_response("The import check fails: the deploy would fail"),
                },
            },
        },
        "/apps/{app}/diff": {
            "parameters": [APP],
            "get": {
                "summary": "What changed from revision a to revision b",
                "description": (
                    "Entrypoint, message, annotations, settings (with their kind) and the "
                    "bundles' files, with a unified diff for text files up to 256 KiB and "
                    "2,000 lines each. Any other query parameter is refused (unknown_field)."
                ),
                "parameters": [
                    {**REV, "name": "a", "in": "query"},
                    {**REV, "name": "b", "in": "query"},
                ],
                "responses": {"200": _json(_ref("Diff")), **ERRORS},
            },
        },
        "/apps/{app}/set-rev": {
            "parameters": [APP],
            "post": _mutation(
                "Move the alias to another Deployed revision (rollback). It supersedes an "
                "operation running on the app: that one is cancelled at its next safe point "
                "(a deploy's revision ends Failed, 'cancelled: superseded by …'). A rollback "
                "(to a revision older than Current) holds the app if hold_on_rollback is on.",
                "deployer",
                _body(
                    {
                        "revision": {"type": "string"},
                        "strategy": {"type": "string", "enum": ["rolling", "recreate"]},
                        **REASON,
                        **EXPECTED_CURRENT,
                    },
                    ["revision"],
                ),
                {**OP_ACCEPTED, **OP_DONE},
            ),
        },
        "/apps/{app}/rollout": {
            "parameters": [APP],
            "post": _mutation(
                "Restart every runner of the Current revision (graceful, or force kills)",
                "deployer",
                _body({"force": {"type": "boolean"}, **REASON, **EXPECTED_CURRENT}),
                OP_ACCEPTED,
            ),
        },
        "/apps/{app}/scale": {
            "parameters": [APP],
            "post": _mutation(
                "Change parameters on the alias at once (code-specific ones until the next "
                "deploy or set-rev)",
                "deployer",
                _body(
                    {
                        "keep_alive": {"type": "integer"},
                        "min_concurrency": {"type": "integer"},
                        "max_concurrency": {"type": "integer"},
                        "concurrency_buffer": {"type": "integer"},
                        "concurrency_buffer_perc": {"type": "integer"},
                        "scaling_delay": {"type": "integer"},
                        "request_timeout": {"type": "integer"},
                        "max_multiplexing": {"type": "integer"},
                        "startup_timeout": {"type": "integer"},
                        "machine_type": {"type": "string"},
                        **REASON,
                    }
                ),
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "operation": _ref("Operation"),
                                "settings": {"type": "object"},
                                "notes": {"type": "array", "items": {"type": "string"}},
                            },
                        }
                    )
                },
            ),
        },
        "/apps/{app}/suspend": {
            "parameters": [APP],
            "post": _mutation(
                "Suspend a Deployed revision (default: Current, making the app answer 503)",
                "admin",
                _body({"revision": {"type": ["string", "null"]}, **REASON, **EXPECTED_CURRENT}),
                OP_DONE,
            ),
        },
        "/apps/{app}/resume": {
            "parameters": [APP],
            "post": _mutation(
                "Resume a Suspended revision (default: Current)",
                "admin",
                _body({"revision": {"type": ["string", "null"]}, **REASON}),
                OP_DONE,
            ),
        },
        "/apps/{app}/runners": {
            "parameters": [APP],
            "get": {
                "summary": "The app's runners, as the runtime reports them",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"runners": {"type": "array", "items": _ref("Runner")}},
                        }
                    ),
                    **ERRORS,
                    **UNAVAILABLE,
                },
            },
        },
        "/apps/{app}/health": {
            "parameters": [APP],
            "get": {
                "summary": "Current's and Previous's traffic over the last 5 minutes, and "
                "Current's runners",
                "description": "Counted by the gateway per revision: requests, 5xx answers "
                "(the gateway's own 502/503/504 for the revision included) and latency to the "
                "answer's head. When the runtime cannot be asked the answer is still 200, with "
                "status `unavailable` and a message.",
                "responses": {
                    "200": _json(
                        {
                            "allOf": [
                                {"type": "object", "properties": {"app": {"type": "string"}}},
                                _ref("Health"),
                            ]
                        }
                    ),
                    **ERRORS,
                },
            },
        },
        "/apps/{app}/logs": {
            "parameters": [APP],
            "get": {
                "summary": "Tail of runner stdout/stderr (of the app, a revision or a runner)",
                "parameters": [
                    {"name": "revision", "in": "query", "schema": {"type": "string"}},
                    {"name": "runner", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "tail",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Log lines",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **ERRORS,
                    **UNAVAILABLE,
                },
            },
        },
        "/apps/{app}/operations": {
            "parameters": [APP],
            "get": {
                "summary": "The app's history: every operation, newest first",
                "parameters": PAGE,
                "responses": {"200": _json(page_of("operations", "Operation")), **ERRORS},
            },
        },
        "/apps/{app}/operations/{operation_id}/cancel": {
            "parameters": [
                APP,
                {
                    "name": "operation_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                },
            ],
            "post": {
                "summary": "Cancel a queued or running operation: it stops at its next safe point "
                "and ends `cancelled`, recording who and why (a deploy's revision ends Failed)",
                "description": "Needs the deployer role. 202 while it winds down (its `cancel` "
                "is set), 200 once it ended; 409 operation_finished if it already ended.",
                "requestBody": _body(REASON),
                "responses": {**OP_ACCEPTED, **ERRORS, "409": CONFLICT["409"]},
            },
        },
        "/apps/{app}/release": {
            "parameters": [APP],
            "post": _mutation(
                "Release the hold a rollback set: the next deploy becomes Current again "
                "(Current itself does not change). 409 not_held if the app is not held.",
                "deployer",
                _body(REASON),
                OP_DONE,
            ),
        },
        "/apps/{app}/hold-policy": {
            "parameters": [APP],
            "post": _mutation(
                "Turn hold-on-rollback on or off for this app (default on). Turning it off "
                "does not release a hold in place.",
                "deployer",
                _body({"hold_on_rollback": {"type": "boolean"}, **REASON}, ["hold_on_rollback"]),
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"operation": _ref("Operation"), "app": _ref("App")},
                        }
                    )
                },
            ),
        },
        "/apps/{app}/network": {
            "parameters": [APP],
            "post": _mutation(
                "Set the app's outbound network: `off` (the default: its runners reach no "
                "network) or `outbound` (outbound connections through pasta, never to the "
                "host's loopback). Admins only. Runners started afterwards have it; running "
                "ones keep theirs. 400 for any other value, and nothing changes.",
                "admin",
                _body(
                    {"network": {"type": "string", "enum": ["off", "outbound"]}, **REASON},
                    ["network"],
                ),
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"operation": _ref("Operation"), "app": _ref("App")},
                        }
                    )
                },
            ),
        },
        "/runners/{runner_id}/stop": {
            "parameters": [RUNNER],
            "post": _mutation(
                "Stop a runner gracefully (optionally start its replacement first)",
                "deployer",
                _body({"replace": {"type": "boolean"}, **REASON}),
                OP_ACCEPTED,
            ),
        },
        "/runners/{runner_id}/kill": {
            "parameters": [RUNNER],
            "post": _mutation("Kill a runner at once", "admin", _body(REASON), OP_ACCEPTED),
        },
        "/operations/{operation_id}": {
            "parameters": [
                {
                    "name": "operation_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "get": {
                "summary": "One operation with its timestamped steps",
                "responses": {"200": _json(_ref("Operation")), **ERRORS},
            },
        },
    }


def _webhook_paths() -> dict[str, Any]:
    """/webhooks...: admin only (an endpoint's URL can be a secret itself)."""
    admin = "Needs the admin role."
    webhook_id = {
        "name": "webhook_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }
    return {
        "/webhooks": {
            "get": {
                "summary": "Every webhook endpoint",
                "description": admin,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"webhooks": {"type": "array", "items": _ref("Webhook")}},
                        }
                    ),
                    **ERRORS,
                },
            },
            "post": {
                "summary": "Register an endpoint; the answer carries its signing secret, once",
                "description": admin + " The URL must be http(s) with a host, at most 2000 "
                "characters. Deliveries go wherever it points (admins are trusted with that); "
                "redirects are never followed.",
                "parameters": [IDEMPOTENCY],
                "requestBody": _body(
                    {
                        "url": {"type": "string", "maxLength": 2000},
                        "app": {
                            "type": ["string", "null"],
                            "description": "Only this app's events; left out: every app",
                        },
                        "events": {
                            "type": "array",
                            "items": _ref("WebhookEvent"),
                            "description": "Empty or left out: every event",
                        },
                        "format": {"type": "string", "enum": ["json", "slack"]},
                        "description": {"type": "string", "maxLength": 200},
                    },
                    ["url"],
                ),
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "properties": {
                                "webhook": _ref("Webhook"),
                                "secret": {"type": "string"},
                            },
                        },
                        "Created (or, for a repeated Idempotency-Key, the first answer)",
                    ),
                    **ERRORS,
                    "422": {"$ref": "#/components/responses/KeyReused"},
                },
            },
        },
        "/webhooks/{webhook_id}": {
            "parameters": [webhook_id],
            "get": {
                "summary": "One webhook endpoint",
                "description": admin,
                "responses": {"200": _json(_ref("Webhook")), **ERRORS},
            },
            "delete": {
                "summary": "Remove an endpoint and its delivery records",
                "description": admin,
                "responses": {
                    "200": _json({"type": "object", "properties": {"deleted": _ref("Webhook")}}),
                    **ERRORS,
                },
            },
        },
        "/webhooks/{webhook_id}/deliveries": {
            "parameters": [webhook_id],
            "get": {
                "summary": "Deliveries to the endpoint, newest first, paginated",
                "description": admin,
                "parameters": PAGE,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "deliveries": {
                                    "type": "array",
                                    "items": _ref("WebhookDelivery"),
                                },
                                "count": {"type": "integer"},
                                "page": {"type": "integer"},
                                "page_size": {"type": "integer"},
                                "next": {"type": ["integer", "null"]},
                            },
                        }
                    ),
                    **ERRORS,
                },
            },
        },
        "/webhooks/{webhook_id}/test": {
            "parameters": [webhook_id],
            "post": {
                "summary": "Queue a test event to the endpoint, whatever events it takes",
                "description": admin,
                "responses": {
                    "202": _json(
                        {"type": "object", "properties": {"delivery": _ref("WebhookDelivery")}},
                        "Queued",
                    ),
                    **ERRORS,
                },
            },
        },
    }


def _webhook_schemas() -> dict[str, Any]:
    from dashboard.webhooks.models import EventType

    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    return {
        "WebhookEvent": {"type": "string", "enum": list(EventType.values)},
        "Webhook": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "url": {"type": "string"},
                "app": {"type": ["string", "null"]},
                "events": {"type": "array", "items": _ref("WebhookEvent")},
                "format": {"type": "string", "enum": ["json", "slack"]},
                "description": {"type": "string"},
                "secret_hint": {"type": "string"},
                "created_by": {"type": ["string", "null"]},
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "WebhookDelivery": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "webhook": {"type": "integer"},
                "event": _ref("WebhookEvent"),
                "operation": {"type": ["string", "null"], "format": "uuid"},
                "status": {
                    "type": "string",
                    "enum": ["pending", "retrying", "succeeded", "failed"],
                },
                "attempts": {"type": "integer"},
                "response_code": {"type": ["integer", "null"]},
                "error": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "last_attempt_at": nullable_time,
                "next_attempt_at": nullable_time,
                "finished_at": nullable_time,
            },
        },
    }


def _error_response(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def document() -> dict[str, Any]:
    paths = _paths()
    # A preview takes exactly the deploy's form: one description of it.
    paths["/apps/{app}/revisions/preview"]["post"]["requestBody"] = paths["/apps/{app}/revisions"][
        "post"
    ]["requestBody"]
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard control API",
            "version": "1",
            "description": "The one way to change Switchboard's state. Every mutation is "
            "recorded as an operation, serialised per app, and honours Idempotency-Key.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {**paths, **_webhook_paths()},
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (sbt_...) from `manage.py create_token`, or "
                    "a dashboard token (sbd_...).",
                }
            },
            "responses": {
                "BadRequest": _error_response("Bad input; nothing changed"),
                "Unauthenticated": _error_response("Missing or invalid token"),
                "Forbidden": _error_response("The token's role does not allow this"),
                "NotFound": _error_response("Unknown app, revision, runner or operation"),
                "Conflict": _error_response(
                    "Refused in the current state (e.g. another operation is in progress)"
                ),
                "KeyReused": _error_response(
                    "The Idempotency-Key was used for a different request (idempotency_key_reused)"
                ),
                "TooLarge": _error_response("Bundle over the size limit"),
                "Unavailable": _error_response("Runtime or task queue unavailable"),
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "details": {"type": "object"},
                            },
                        }
                    },
                },
                "Revision": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "short_id": {"type": "string"},
                        "app": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["deploying", "deployed", "failed", "suspended"],
                        },
                        "current": {"type": "boolean"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "deployed_at": nullable_time,
                        "message": {"type": "string"},
                        "annotations": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "deployed_by": {"type": ["string", "null"]},
                        "machine_type": {"type": ["string", "null"]},
                        "settings": {"type": "object"},
                        "code_settings": {"type": "object"},
                        "entrypoint": {"type": "string"},
                        "error": {"type": "string"},
                        "log_tail": {"type": "string"},
                        "endpoints": {"type": "array", "items": {"type": "string"}},
                        "pinned": {"type": "boolean"},
                        "pinned_by": {"type": ["string", "null"]},
                        "pinned_at": nullable_time,
                    },
                },
                "RetentionSettings": {
                    "type": "object",
                    "properties": {
                        "keep": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "enabled": {"type": "boolean"},
                    },
                },
                "RetentionPlan": {
                    "type": "object",
                    "properties": {
                        "keep": {"type": "integer"},
                        "enabled": {"type": "boolean"},
                        "would_delete": {
                            "description": "Oldest first: what retention would delete.",
                            "type": "array",
                            "items": _ref("RetentionVerdict"),
                        },
                        "kept": {
                            "description": "Newest first: every other revision, with why.",
                            "type": "array",
                            "items": _ref("RetentionVerdict"),
                        },
                    },
                },
                "RetentionVerdict": {
                    "type": "object",
                    "properties": {
                        "revision": {"type": "string", "format": "uuid"},
                        "short_id": {"type": "string"},
                        "status": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "pinned": {"type": "boolean"},
                        "why": {"type": "string"},
                    },
                },
                "Diff": {
                    "type": "object",
                    "properties": {
                        "app": {"type": "string"},
                        "a": {"type": "object"},
                        "b": {"type": "object"},
                        "fields": {"type": "array", "items": {"type": "object"}},
                        "annotations": {"type": "array", "items": {"type": "object"}},
                        "settings": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "type": "string",
                                        "enum": ["runtime-tunable", "code-specific"],
                                    },
                                    "unit": {"type": "string"},
                                    "a": {},
                                    "b": {},
                                    "changed": {"type": "boolean"},
                                },
                            },
                        },
                        "files": {
                            "type": "object",
                            "properties": {
                                "available": {"type": "boolean"},
                                "message": {"type": "string"},
                                "counts": {"type": "object"},
                                "entries": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "path": {"type": "string"},
                                            "change": {
                                                "type": "string",
                                                "enum": ["added", "removed", "changed"],
                                            },
                                            "size_a": {"type": ["integer", "null"]},
                                            "size_b": {"type": ["integer", "null"]},
                                            "diff": {"type": ["string", "null"]},
                                            "skipped": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                        "limits": {"type": "object"},
                    },
                },
                "DeployPreview": {
                    "type": "object",
                    "properties": {
                        "app": {"type": "string"},
                        "app_exists": {"type": "boolean"},
                        "entrypoint": {"type": "string"},
                        "endpoints": {"type": "array", "items": {"type": "string"}},
                        "strategy": {"type": "string"},
                        "reset_scale": {"type": "boolean"},
                        "bundle": {"type": "object"},
                        "settings": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {"type": "string"},
                                    "value": {},
                                    "code": {},
                                    "current": {},
                                    "source": {
                                        "type": "string",
                                        "enum": ["code", "default", "previous_current"],
                                    },
                                },
                            },
                        },
                        "current": {"type": ["string", "null"]},
                        "diff": {"oneOf": [_ref("Diff"), {"type": "null"}]},
                    },
                },
                "Operation": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "app": {"type": "string"},
                        "kind": {
                            "type": "string",
                            "enum": [
                                "deploy",
                                "set_rev",
                                "rollout",
                                "delete_rev",
                                "scale",
                                "suspend",
                                "resume",
                                "runner_stop",
                                "runner_kill",
                                "release",
                                "hold_policy",
                                "pin",
                                "unpin",
                                "retention",
                                "network",
                            ],
                        },
                        "state": {
                            "type": "string",
                            "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
                        },
                        "requester": {"type": "string"},
                        "source": {
                            "type": "string",
                            "enum": ["cli", "dashboard", "api", "retention"],
                        },
                        "reason": {"type": "string"},
                        "params": {"type": "object"},
                        "revision": {"type": ["string", "null"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "started_at": nullable_time,
                        "finished_at": nullable_time,
                        "duration_ms": {"type": ["integer", "null"]},
                        "error": {"type": "string"},
                        "result": {"type": "object"},
                        "cancel": {
                            "description": "Set once a cancel was requested (by someone, or by "
                            "a set-rev superseding it): when and the whole reason.",
                            "oneOf": [
                                {
                                    "type": "object",
                                    "properties": {
                                        "requested_at": {"type": "string", "format": "date-time"},
                                        "reason": {"type": "string"},
                                    },
                                },
                                {"type": "null"},
                            ],
                        },
                        "steps": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "at": {"type": "string", "format": "date-time"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "App": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["serving", "suspended", "no current revision"],
                        },
                        "current_revision": {"oneOf": [_ref("Revision"), {"type": "null"}]},
                        "auth_mode": {"type": "string", "enum": ["private", "shared", "public"]},
                        "owner": {"type": ["string", "null"]},
                        "settings": {"type": "object"},
                        "scale_overrides": {"type": "array", "items": {"type": "string"}},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "last_operation": {"oneOf": [_ref("Operation"), {"type": "null"}]},
                        "revision_count": {"type": "integer"},
                        "previous_revision": {
                            "description": "The revision Current before the last alias move.",
                            "oneOf": [_ref("RevisionRef"), {"type": "null"}],
                        },
                        "current_since": nullable_time,
                        "current_set_by": {
                            "description": "The operation that last moved the alias.",
                            "oneOf": [
                                {
                                    "type": "object",
                                    "properties": {
                                        "operation": {"type": "string", "format": "uuid"},
                                        "kind": {"type": "string"},
                                        "by": {"type": "string"},
                                        "source": {"type": "string"},
                                        "reason": {"type": "string"},
                                        "at": {"type": "string", "format": "date-time"},
                                    },
                                },
                                {"type": "null"},
                            ],
                        },
                        "hold_on_rollback": {"type": "boolean"},
                        "retention": _ref("RetentionSettings"),
                        "held": {"type": "boolean"},
                        "network": {"type": "string", "enum": ["off", "outbound"]},
                        "hold": {
                            "description": "While held: the rollback that set the hold.",
                            "oneOf": [
                                {
                                    "type": "object",
                                    "properties": {
                                        "since": {"type": "string", "format": "date-time"},
                                        "by": {"type": ["string", "null"]},
                                        "reason": {"type": "string"},
                                        "operation": {"type": ["string", "null"]},
                                        "revision": {
                                            "oneOf": [_ref("RevisionRef"), {"type": "null"}]
                                        },
                                    },
                                },
                                {"type": "null"},
                            ],
                        },
                        "parameters": {"type": "array", "items": {"type": "object"}},
                        "health": _ref("Health"),
                    },
                },
                "Health": {
                    "type": "object",
                    "description": "Is Current serving well? Figures over the last window_s "
                    "seconds, counted by the gateway (see GET /apps/{app}/health).",
                    "properties": {
                        "status": {
                            "type": "string",
                            "enum": ["available", "unavailable", "no current revision"],
                        },
                        "message": {
                            "type": "string",
                            "description": "Why it is unavailable; empty otherwise.",
                        },
                        "window_s": {"type": "integer"},
                        "current": {"oneOf": [_ref("RevisionTraffic"), {"type": "null"}]},
                        "previous": {"oneOf": [_ref("RevisionTraffic"), {"type": "null"}]},
                        "runners": {
                            "description": "Current's runners: ready (warm, idle), busy "
                            "(serving), starting, failing (crash-looping or failed to start "
                            "in the last 2 minutes).",
                            "oneOf": [
                                {
                                    "type": "object",
                                    "properties": {
                                        "ready": {"type": "integer"},
                                        "busy": {"type": "integer"},
                                        "starting": {"type": "integer"},
                                        "failing": {"type": "integer"},
                                        "scaled_to_zero": {"type": "boolean"},
                                        "text": {
                                            "type": "string",
                                            "examples": [
                                                "2 ready · 1 busy",
                                                "scaled to zero — the next request cold-starts it",
                                            ],
                                        },
                                    },
                                },
                                {"type": "null"},
                            ],
                        },
                        "summary": {
                            "type": "string",
                            "examples": ["120 req · 0.8% 5xx · p99 45 ms · 2 ready"],
                        },
                    },
                },
                "RevisionTraffic": {
                    "type": "object",
                    "properties": {
                        "revision": {"type": "string", "format": "uuid"},
                        "short_id": {"type": "string"},
                        "requests": {"type": "integer"},
                        "errors_5xx": {"type": "integer"},
                        "error_rate": {
                            "type": "number",
                            "description": "errors_5xx ÷ requests (0.008 is 0.8%); 0 "
                            "without requests.",
                        },
                        "p50_ms": {"type": ["number", "null"]},
                        "p99_ms": {
                            "type": ["number", "null"],
                            "description": "Null without requests. Read from a log-scale "
                            "histogram: never lower than the true value, at most 19% higher.",
                        },
                        "window_s": {"type": "integer"},
                        "text": {
                            "type": "string",
                            "examples": [
                                "120 req · 1 5xx (0.8%) · p50 3.4 ms · p99 45 ms",
                                "no requests",
                            ],
                        },
                    },
                },
                "RevisionRef": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "short_id": {"type": "string"},
                    },
                },
                **_webhook_schemas(),
                "Runner": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "app": {"type": "string"},
                        "revision": {"type": "string"},
                        "state": {"type": "string"},
                        "in_flight": {"type": "integer"},
                        "pid": {"type": ["integer", "null"]},
                        "started_at": {"type": "string"},
                        "ready_at": {"type": ["string", "null"]},
                        "idle_since": {"type": ["string", "null"]},
                        "idle_shutdown_at": {"type": ["string", "null"]},
                        "restarts": {"type": "integer"},
                        "error": {"type": "string"},
                        "machine_type": {"type": "string"},
                    },
                },
            },
        },
    }
