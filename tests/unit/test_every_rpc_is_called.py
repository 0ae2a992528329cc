"""Every RPC of every service is called by some test through a real server: on a stub
(`.Method(`) or by its name (`getattr(stub, "Method")`, an HTTP test's operation table). A
method added without a test of its wiring fails here, naming it; its rules belong in
tests/unit/domain (docs/testing.md)."""
import pathlib
import re

from protos.carpet.admin.v1 import admin_pb2
from protos.carpet.credit.v1 import account_pb2, audit_pb2, auth_pb2, credit_pb2, notification_pb2
from protos.carpet.render.v1 import render_pb2

TESTS = pathlib.Path(__file__).resolve().parents[1]
SERVICES = (credit_pb2, account_pb2, audit_pb2, notification_pb2, auth_pb2, render_pb2,
            admin_pb2)


def test_every_rpc_is_called_by_a_test():
    text = "\n".join(path.read_text() for path in TESTS.rglob("*.py")
                     if path.resolve() != pathlib.Path(__file__).resolve())
    methods = [(service.name, method.name) for module in SERVICES
               for service in module.DESCRIPTOR.services_by_name.values()
               for method in service.methods]
    assert len(methods) > 100  # the descriptors were read
    untested = [f"{service}.{method}" for service, method in methods
                if not re.search(rf"\.{method}\(|[\"']{method}[\"']", text)]
    assert untested == []
