"""The API's OpenAPI document, with the refusals it really sends.

FastAPI documents one error body: a request that does not fit the schema is refused
422 with ``detail`` as a list of validation errors. Watchkeeper's own refusals (a rule
that says no, something not found, a full disk) carry ``detail`` as one sentence. Both
are declared here, on every API operation, so that a client (or schemathesis) reading
the document expects what comes: 422 is either shape; 400, 401, 403, 404, 409, 413,
503 and 507 carry a :data:`REFUSAL`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

REFUSAL = {
    "title": "Refusal",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string", "title": "Detail", "description": "Why."}},
}

REFUSALS = {
    "400": "A body that is not the form or JSON the operation takes.",
    "401": "No valid API token.",
    "403": "The token's user may not do this.",
    "404": "Not found among what the token's user may see.",
    "409": "The state of the record does not allow it now.",
    "413": "An upload larger than the server accepts.",
    "503": "The database refused the change or a model cannot be loaded; nothing stored.",
    "507": "The disk is full; nothing stored.",
}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def declare_refusals(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (changed in place) with the refusals of every ``/api/`` operation."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Refusal"] = REFUSAL
    refusal = {"$ref": "#/components/schemas/Refusal"}
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in REFUSALS.items():
                responses.setdefault(
                    status, {"description": description, "content": _content(refusal)}
                )
            invalid = responses.get("422")
            if invalid is None:
                responses["422"] = {
                    "description": "Refused by a rule (the reason in words).",
                    "content": _content(refusal),
                }
            else:
                listed = invalid["content"]["application/json"]["schema"]
                invalid["description"] = (
                    "A request that does not fit the schema (detail: a list of validation "
                    "errors), or one a rule refuses (detail: the reason in words)."
                )
                invalid["content"] = _content({"anyOf": [listed, refusal]})
    return document


def with_refusals(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document declare its refusals (built once, then cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        document = build()
        return declare_refusals(document) if first else document

    app.openapi = openapi  # type: ignore[method-assign]
