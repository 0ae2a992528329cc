"""docs/reference.md names the whole public surface: every gRPC method of every service (under
its service's heading), every HTTP path of the gateway and every error reason of the error
table. A method, path or reason added without it fails here."""
import glob
import importlib
import os
import re

from admin_gateway.surface import OPERATIONS
from carpet_common import errors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reference() -> str:
    with open(os.path.join(ROOT, "docs", "reference.md"), encoding="utf-8") as page:
        return page.read()


def services():
    for path in glob.glob(os.path.join(ROOT, "protos", "carpet", "*", "v1", "*_pb2.py")):
        module = importlib.import_module(os.path.relpath(path, ROOT)[:-3].replace(os.sep, "."))
        yield from module.DESCRIPTOR.services_by_name.values()


def test_every_grpc_method_is_listed_under_its_service():
    page = reference()
    missing = []
    for service in services():
        section = re.search(rf"### `{re.escape(service.full_name)}`\n(.*?)(?=\n##|\Z)", page,
                            re.S)
        listed = set(re.findall(r"^\| `(\w+)`", section.group(1), re.M)) if section else set()
        missing += [f"{service.full_name}/{method.name}" for method in service.methods
                    if method.name not in listed]
    assert missing == []


def test_every_http_path_and_error_reason_is_listed():
    page = reference()
    paths = [f"`{operation.http.verb} {operation.http.template}`" for operation in OPERATIONS
             if operation.http]
    reasons = [f"`{cls.reason}`" for cls in errors.ERROR_CLASSES]
    assert [text for text in paths + reasons if text not in page] == []
