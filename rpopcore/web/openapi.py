"""``GET /api/v1/openapi.json``: the JSON API described in OpenAPI 3.1.
A test checks that every route of the application is described here."""

from __future__ import annotations

from rpopcore import __version__
from rpopcore.config.declarative import RECORD_KEYS, SETTINGS_KEYS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _responses(ok: str, *statuses: int, schema=None) -> dict:
    answers = {"200" if ok == "200" else ok: {"description": "done", **(
        {"content": {"application/json": {"schema": schema}}} if schema else {})}}
    words = {400: "bad input: error names the field", 401: "no or wrong credentials",
             403: "the caller lacks the role (or a cookie request its X-CSRF-Token)",
             404: "no such record for this caller", 409: "refused by a limit or policy (max_accounts_per_user...)",
             429: "too many failed sign-ins"}
    for status in (401, 429, *statuses):
        answers[str(status)] = {"description": words[status],
                                "content": {"application/json": {"schema": _ERROR}}}
    return answers


def _op(summary: str, ok: str = "200", *statuses: int, schema=None, body=None) -> dict:
    op = {"summary": summary, "responses": _responses(ok, *statuses, schema=schema)}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


RECORD = {"$ref": "#/components/schemas/Record"}
ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]


def document() -> dict:
    record_keys = sorted(RECORD_KEYS)
    return {
        "openapi": "3.1.0",
        "info": {"title": "rpop", "version": __version__,
                 "description": "Remote POP3 accounts and the RPOP module settings. Authenticate with HTTP Basic "
                                "(local address and web password) or the pages' session cookie plus X-CSRF-Token."},
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                "cookie": {"type": "apiKey", "in": "cookie", "name": "rpop_session"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "field"],
                          "properties": {"error": {"type": "string"}, "field": {"type": ["string", "null"]}}},
                "Settings": {"type": "object", "properties": {k: {} for k in SETTINGS_KEYS},
                             "description": "the [rpop] table of a declarative file"},
                "Record": {
                    "type": "object",
                    "description": "the keys of a [[remote]] or [[unified]] table (never a password), and the status",
                    "properties": {
                        **{k: {} for k in record_keys if k not in ("password", "password_env", "password_file")},
                        "password": {"type": "string", "writeOnly": True},
                        "id": {"type": "integer", "readOnly": True},
                        "kind": {"enum": ["remote", "unified"]},
                        "last": {"type": ["string", "null"], "readOnly": True,
                                 "description": "the last success (ISO time) or the error code"},
                        "error": {"type": ["string", "null"], "readOnly": True},
                        "next_poll": {"type": ["string", "null"], "readOnly": True},
                        "explanation": {"type": "string", "readOnly": True},
                        "retrieved": {"type": "integer", "readOnly": True},
                        "retrieved_total": {"type": "integer", "readOnly": True},
                    },
                },
                "PollResult": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "retrieved": {"type": "integer"}, "delivered": {"type": "integer"},
                    "error": {"type": ["string", "null"]}, "detail": {"type": "string"}}},
            },
        },
        "security": [{"basic": []}, {"cookie": []}],
        "paths": {
            "/healthz": {"get": {"summary": "200 while the daemon can use its state store, else 503",
                                 "security": [], "responses": {"200": {"description": "healthy"},
                                                               "503": {"description": "failing"}}}},
            "/api/v1/openapi.json": {"get": {"summary": "this document", "security": [],
                                             "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/api/v1/me": {"get": _op("the caller: address, role, may_poll")},
            "/api/v1/settings": {
                "get": _op("the module settings (admin)", "200", 403, schema={"$ref": "#/components/schemas/Settings"}),
                "put": _op("change the settings given (admin); all or nothing", "200", 400, 403, 409,
                           body={"$ref": "#/components/schemas/Settings"}),
            },
            "/api/v1/polling": {"get": _op("whether the module polls now (admin)", "200", 403)},
            "/api/v1/records": {
                "get": {**_op("records: an admin's all (?owner=, ?kind=), a user's own", "200", 403,
                              schema={"type": "array", "items": RECORD}),
                        "parameters": [{"name": "owner", "in": "query", "schema": {"type": "string"}},
                                       {"name": "kind", "in": "query", "schema": {"enum": ["remote", "unified"]}}]},
                "post": _op("add a record", "201", 400, 403, 409, schema=RECORD, body=RECORD),
            },
            "/api/v1/records/{id}": {
                "parameters": ID,
                "get": _op("one record", "200", 404, schema=RECORD),
                "patch": _op("change the keys given; an empty password keeps the stored one", "200", 400, 403, 404,
                             409, schema=RECORD, body=RECORD),
                "delete": _op("remove the record (its mailbox's UIDs are kept)", "204", 403, 404),
            },
            "/api/v1/records/{id}/poll": {
                "parameters": ID,
                "post": _op("poll now, within processors", "200", 403, 404, 409,
                            schema={"$ref": "#/components/schemas/PollResult"}),
            },
            "/api/v1/accounts": {"get": {**_op("local accounts (admin), 50 a page", "200", 400, 403),
                                         "parameters": [{"name": "search", "in": "query", "schema": {"type": "string"}},
                                                        {"name": "page", "in": "query",
                                                         "schema": {"type": "integer", "minimum": 1}}]}},
            "/api/v1/accounts/{address}": {
                "parameters": [{"name": "address", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": _op("one account: its right and records (admin, or the account itself)", "200", 404),
                "patch": _op("grant or withdraw the right to keep remote accounts (admin)", "200", 400, 403, 404,
                             body={"type": "object", "properties": {"may_poll": {"type": ["boolean", "null"]}}}),
            },
        },
    }
