"""The OpenAPI 3 document of the HTTP API, generated from the AdminService descriptor (each
method's google.api.http route and access, admin_gateway.surface), so it always describes
exactly the routes the gateway serves and the bodies it reads and writes (proto JSON:
lowerCamelCase names, 64-bit integers as strings, enums by name)."""
from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from admin_gateway.surface import Operation
from carpet_common.errors import HTTP_ERROR_STATUSES

ERROR_SCHEMA = {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string", "description": "reason, e.g. INSUFFICIENT_CREDITS"},
                   "message": {"type": "string"}},
}
# The error responses every JSON operation may give, from the one error map.
ERROR_STATUSES = {str(status): text for status, text in sorted(HTTP_ERROR_STATUSES.items())}
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_SECURED: list[dict[str, list[str]]] = [{"adminToken": []}, {"bearer": []}]


def _picture_operation(operation: Operation, components: dict) -> dict:
    """GET /admin/renders/{id}/image|thumbnail|room and the like answer with the picture."""
    return {
        "operationId": operation.name, "summary": f"AdminService.{operation.name}",
        "parameters": [_ID_PARAMETER],
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
    }


CSV_OPTIONS = [
    {"name": "lang", "in": "query", "required": False,
     "description": "header and coded values in this language's words (default: identifiers)",
     "schema": {"type": "string", "enum": ["tr", "en"]}},
    {"name": "delimiter", "in": "query", "required": False,
     "description": "between fields: comma (default) or semicolon (spreadsheets set to Turkish)",
     "schema": {"type": "string", "enum": ["comma", "semicolon"]}},
]


def _export_operation(operation: Operation, components: dict) -> dict:
    """GET /admin/*.csv: the JSON list's query filters, a CSV body."""
    return {
        "operationId": operation.name, "summary": f"AdminService.{operation.name} as CSV",
        "parameters": [*_query_parameters(operation.request_type.DESCRIPTOR, components),
                       *CSV_OPTIONS],
        "security": _SECURED,
        "responses": {
            "200": {"description": "UTF-8 CSV with a byte-order mark and a header row",
                    "content": {"text/csv": {"schema": {"type": "string"}}}},
            **{status: {"description": text, "content": _ERROR_BODY}
               for status, text in ERROR_STATUSES.items()},
        },
    }


def _upload_operation(operation: Operation, components: dict) -> dict:
    """POST /admin/carpets/import: a multipart upload, a JSON report."""
    report = add_message(operation.response_type.DESCRIPTOR, components)
    return {
        "operationId": operation.name,
        "summary": f"AdminService.{operation.name} from an uploaded spreadsheet",
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
    }


def _query_parameters(request: Descriptor, components: dict) -> list[dict]:
    return [{"name": field.json_name, "in": "query", "required": False,
             "schema": _single(field, components)}
            for field in request.fields
            if not field.is_repeated and field.type != FieldDescriptor.TYPE_MESSAGE
            or (field.message_type is not None
                and field.message_type.full_name == "google.protobuf.Timestamp")]
_SCALARS: dict[int, dict[str, object]] = {
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
    if field.enum_type is not None:
        return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    if field.message_type is not None:
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


def _json_operation(operation: Operation, components: dict) -> dict:
    route = operation.http
    assert route is not None
    result: dict = {"operationId": operation.name, "summary": f"AdminService.{operation.name}",
                    "security": [] if operation.rule.public else _SECURED}
    path_parameters = [_ID_PARAMETER] if "{id}" in route.template else []
    result["parameters"] = path_parameters
    if route.body:
        schema = {"$ref": "#/components/schemas/"
                          f"{add_message(operation.request_type.DESCRIPTOR, components)}"}
        result["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": schema}}}
    else:
        result["parameters"] = path_parameters + [
            parameter for parameter in _query_parameters(operation.request_type.DESCRIPTOR,
                                                         components)
            if not (path_parameters and parameter["name"] == "id")]
    answer = add_message(operation.response_type.DESCRIPTOR, components)
    result["responses"] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{answer}"}}}},
        **{status: {"description": text, "content": _ERROR_BODY}
           for status, text in ERROR_STATUSES.items()},
    }
    if route.body:
        result["responses"]["413"] = {
            "description": "body over its limit (64 KiB; 14 MiB with a carpet's picture)",
            "content": _ERROR_BODY}
    return result


def build_document(operations) -> dict:
    """Every operation with an HTTP route, described by the kind of its answer."""
    components: dict = {"Error": ERROR_SCHEMA}
    paths: dict = {}
    for operation in sorted((operation for operation in operations if operation.http),
                            key=lambda operation: (operation.http.template,
                                                   operation.http.verb)):
        describe = (_upload_operation if operation.upload
                    else _picture_operation if operation.picture
                    else _export_operation if operation.export else _json_operation)
        route = operation.http
        paths.setdefault(route.template, {})[route.verb.lower()] = describe(operation,
                                                                            components)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Carpet admin API", "version": "1",
                 "description": "The admin gateway's HTTP JSON API (proto JSON bodies)."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "adminToken": {"type": "apiKey", "in": "header", "name": "x-admin-token"},
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
