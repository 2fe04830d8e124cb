"""/api/v1/docs: a readable reference page rendered on the server from the OpenAPI document (no CDN, no script)."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, render_template

bp = Blueprint("api_reference", __name__)

METHODS = ("get", "post", "put", "patch", "delete")


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict | None) -> str:
    """A short type label for a schema: 'string', 'integer', 'array of Customer', 'Customer'."""
    if not schema:
        return ""
    if "$ref" in schema:
        return _ref_name(schema["$ref"])
    if schema.get("type") == "array":
        return "array of " + _type(schema.get("items"))
    label = schema.get("type", "object")
    if schema.get("format"):
        label += f" ({schema['format']})"
    if schema.get("enum"):
        label += ": " + " | ".join(str(v) for v in schema["enum"])
    return label


def operations(spec: dict) -> list[dict]:
    """The document's operations in path order, each with its parameters, body and responses."""
    out = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            out.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "tag": (op.get("tags") or [""])[0],
                    "parameters": [
                        {
                            "name": p.get("name"),
                            "in": p.get("in"),
                            "required": p.get("required", False),
                            "type": _type(p.get("schema")),
                            "description": p.get("description", ""),
                        }
                        for p in item.get("parameters", []) + op.get("parameters", [])
                    ],
                    "body": _type(body) if body else None,
                    "responses": [
                        {
                            "status": status,
                            "description": r.get("description", ""),
                            "type": _type((r.get("content") or {}).get("application/json", {}).get("schema")),
                        }
                        for status, r in op.get("responses", {}).items()
                    ],
                }
            )
    return out


def schema_rows(spec: dict) -> list[dict]:
    """Every component schema with its fields (name, type, required, description)."""
    rows = []
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        required = set(schema.get("required", []))
        rows.append(
            {
                "name": name,
                "fields": [
                    {
                        "name": field,
                        "type": _type(sub),
                        "required": field in required,
                        "description": sub.get("description", ""),
                        "nullable": sub.get("nullable", False),
                    }
                    for field, sub in schema.get("properties", {}).items()
                ],
            }
        )
    return rows


EXAMPLE_BATCH = {
    "lines": [
        {
            "customer_id": "C-1001",
            "transaction_id": "T-20240501-0001",
            "purchase_date": "2024-05-01T10:15:00",
            "product_id": "SKU-42",
            "product_name": "Espresso beans 1 kg",
            "quantity": 2,
            "price_per_unit": 18.5,
        }
    ]
}


@bp.route("/api/v1/docs")
def reference():
    """The API reference for people: operations, parameters, schemas and an example, from the live document."""
    spec = current_app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    return render_template(
        "api/reference.html",
        info=spec.get("info", {}),
        operations=operations(spec),
        schemas=schema_rows(spec),
        example=json.dumps(EXAMPLE_BATCH, indent=2),
    )
