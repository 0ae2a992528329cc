"""The OpenAPI 3 document of the HTTP API, generated from the routes and the proto
descriptors, so it always describes exactly the bodies the gateway reads and writes (proto
JSON: lowerCamelCase names, 64-bit integers as strings, enums by name)."""
from __future__ import annotations

from collections.abc import Callable

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from carpet_common.errors import HTTP_ERROR_STATUSES

ERROR_SCHEMA = {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string", "description": "reason, e.g. INSUFFICIENT_CREDITS"},
                   "message": {"type": "string"}},
}
# The error responses every JSON operation may give, from the one error map.
ERROR_STATUSES = {str(status): text for status, text in sorted(HTTP_ERROR_STATUSES.items())}
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_SECURED = [{"adminToken": []}, {"bearer": []}]


def picture_path_item(rpc: str) -> dict:
    """GET /admin/renders/{id}/image|thumbnail|room answer with the picture itself."""
    return {"get": {
        "operationId": rpc, "summary": f"AdminService.{rpc}",
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}],
        "security": _SECURED,
        "responses": {
            "200": {"description": "the picture", "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
            **{code: {"description": text, "content": _ERROR_BODY} for code, text in (
                ("400", "bad input"), ("401", "missing or bad credentials"),
                ("403", "another organisation's render"),
                ("404", "no such render, carpet or picture"),
                ("412", "not rendered yet, or no longer kept"),
                ("429", "rate limited (see Retry-After)"), ("503", "a service is unavailable"))},
        },
    }}


CSV_OPTIONS = [
    {"name": "lang", "in": "query", "required": False,
     "description": "header and coded values in this language's words (default: identifiers)",
     "schema": {"type": "string", "enum": ["tr", "en"]}},
    {"name": "delimiter", "in": "query", "required": False,
     "description": "between fields: comma (default) or semicolon (spreadsheets set to Turkish)",
     "schema": {"type": "string", "enum": ["comma", "semicolon"]}},
]


def export_path_item(rpc: str, request_type) -> dict:
    """GET /admin/*.csv: the JSON list's query filters, a CSV body."""
    components: dict = {}
    return {"get": {
        "operationId": rpc, "summary": f"AdminService.{rpc} as CSV",
        "parameters": [*_query_parameters(request_type.DESCRIPTOR, components), *CSV_OPTIONS],
        "security": _SECURED,
        "responses": {
            "200": {"description": "UTF-8 CSV with a byte-order mark and a header row",
                    "content": {"text/csv": {"schema": {"type": "string"}}}},
            **{status: {"description": text, "content": _ERROR_BODY}
               for status, text in ERROR_STATUSES.items()},
        },
    }}


def import_path_item(rpc: str, report_type) -> Callable[[dict], dict]:
    """POST /admin/carpets/import: a multipart upload, a JSON report (its schema joins the
    document's components when the document is built)."""
    def item(components: dict) -> dict:
        report = add_message(report_type.DESCRIPTOR, components)
        return {"post": {
            "operationId": rpc, "summary": f"AdminService.{rpc} from an uploaded spreadsheet",
            "security": _SECURED,
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "CSV (UTF-8 or Windows-1254; , ; or tab) or XLSX: "
                                            "sku,name,material,width_cm,length_cm,image"},
                    "pictures": {"type": "string", "format": "binary",
                                 "description": "a ZIP of the pictures the image column names"},
                    "dryRun": {"type": "string", "enum": ["true", "false"],
                               "description": "report only, change nothing (default true)"},
                    "organizationId": {"type": "string", "pattern": "^[0-9]{1,18}$"}}}}}},
            "responses": {
                "200": {"description": "what was done (or would be), row by row",
                        "content": {"application/json": {"schema": {
                            "$ref": f"#/components/schemas/{report}"}}}},
                "413": {"description": "an upload over 20 MiB", "content": _ERROR_BODY},
                **{status: {"description": text, "content": _ERROR_BODY}
                   for status, text in ERROR_STATUSES.items()},
            },
        }}

    return item


def _query_parameters(request: Descriptor, components: dict) -> list[dict]:
    return [{"name": field.json_name, "in": "query", "required": False,
             "schema": _single(field, components)}
            for field in request.fields
            if not field.is_repeated and field.type != FieldDescriptor.TYPE_MESSAGE
            or (field.message_type is not None
                and field.message_type.full_name == "google.protobuf.Timestamp")]
_SCALARS = {
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
}


def _schema_name(descriptor: Descriptor) -> str:
    return descriptor.full_name.replace(".", "_")


def _field_schema(field: FieldDescriptor, components: dict) -> dict:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value, components)}
    schema = _single(field, components)
    return {"type": "array", "items": schema} if field.is_repeated else schema


def _single(field: FieldDescriptor, components: dict) -> dict:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return {"type": "string", "format": "date-time"}
        return {"$ref": f"#/components/schemas/{add_message(field.message_type, components)}"}
    return dict(_SCALARS[field.type])


def add_message(descriptor: Descriptor, components: dict) -> str:
    name = _schema_name(descriptor)
    if name not in components:
        components[name] = {}  # placeholder: messages may refer to themselves
        components[name] = {
            "type": "object",
            "properties": {field.json_name: _field_schema(field, components)
                           for field in descriptor.fields},
        }
    return name


_ID_PARAMETER = {"name": "id", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}


def build_document(routes: dict, extra_paths: dict, public_paths=frozenset()) -> dict:
    """`public_paths`: the sign-in routes, which take no credential header."""
    components: dict = {"Error": ERROR_SCHEMA}
    paths: dict = {}
    for (method, path), (rpc, request_type, response_type) in sorted(routes.items()):
        operation = {"operationId": rpc, "summary": f"AdminService.{rpc}",
                     "security": [] if path in public_paths else _SECURED}
        path_parameters = [_ID_PARAMETER] if "{id}" in path else []
        operation["parameters"] = path_parameters
        request = request_type.DESCRIPTOR
        if method == "GET":
            operation["parameters"] = path_parameters + [
                parameter for parameter in _query_parameters(request, components)
                if not (path_parameters and parameter["name"] == "id")]
        else:
            schema = {"$ref": f"#/components/schemas/{add_message(request, components)}"}
            operation["requestBody"] = {"required": method != "DELETE",
                                        "content": {"application/json": {"schema": schema}}}
        operation["responses"] = {
            "200": {"description": "OK", "content": {"application/json": {"schema": {
                "$ref": f"#/components/schemas/{add_message(response_type.DESCRIPTOR, components)}"
            }}}},
            **{status: {"description": text, "content": _ERROR_BODY}
               for status, text in ERROR_STATUSES.items()},
        }
        if method != "GET":
            operation["responses"]["413"] = {
                "description": "body over its limit (64 KiB; 14 MiB with a carpet's picture)",
                "content": _ERROR_BODY}
        paths.setdefault(path, {})[method.lower()] = operation
    for path, item in extra_paths.items():  # beside the path's JSON methods, if it has any
        paths.setdefault(path, {}).update(item(components) if callable(item) else item)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Carpet admin API", "version": "1",
                 "description": "The admin gateway's HTTP JSON API (proto JSON bodies)."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "adminToken": {"type": "apiKey", "in": "header", "name": "x-admin-token"},
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
