"""Changes made in the render database are audited, even while the credit service (the audit
chain's owner) is down: a STAFF's direct CancelRender, an ADMIN's CreateCarpet. The change and
its audit entry are one transaction in the render database, and the entry reaches the chain,
once, when the credit service is back; refusals are audited too. Real processes; the credit
service is killed, not stopped."""
import time

import grpc

from protos.carpet.credit.v1 import audit_pb2, audit_pb2_grpc
from protos.carpet.render.v1 import render_pb2
from tests.fake_image_api import tiny_png
from tests.helpers import ADMIN, bearer
from tests.security.stack import Deployment, staff_jwt

CANCEL = "/carpet.render.v1.RenderService/CancelRender"
CREATE_CARPET = "/carpet.render.v1.RenderService/CreateCarpet"


def audit_rows(deployment, action):
    audit = audit_pb2_grpc.AuditServiceStub(deployment.channel("CREDIT_ADDR"))
    return list(audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(action=action),
                                    metadata=ADMIN, timeout=10).audit_logs)


def wait_for_rows(deployment, action, count):
    deadline = time.monotonic() + 60
    while len(audit_rows(deployment, action)) < count:
        assert time.monotonic() < deadline, f"{action} never reached the audit log"
        time.sleep(0.2)
    time.sleep(2)  # several relay rounds: each entry is recorded once
    return audit_rows(deployment, action)


def test_a_direct_cancel_is_audited_even_with_the_credit_service_down(tmp_path):
    deployment = Deployment(tmp_path, RENDER_WORKERS="0", RATE_LIMIT_RENDER="off",
                            modules=("credit_service", "render_service")).start()
    try:
        shop = deployment.organization("Cancelling", 10)
        carpet = deployment.carpet("K-CANCEL")
        staff = bearer(staff_jwt(shop.id, subject="sam"))
        renders = deployment.renders(service=None)
        job = renders.SubmitRender(render_pb2.SubmitRenderRequest(
            carpet_id=carpet.id, mode="preview"), metadata=staff, timeout=10)
        deployment.processes["credit_service"].kill()
        canceled = renders.CancelRender(render_pb2.CancelRenderRequest(id=job.id),
                                        metadata=staff, timeout=10)
        assert (canceled.status, canceled.error_text) == (render_pb2.RENDER_STATUS_FAILED,
                                                          "canceled")
        deployment.processes["credit_service"].start()
        audit = audit_pb2_grpc.AuditServiceStub(deployment.channel("CREDIT_ADDR"))

        def rows():
            return list(audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(action=CANCEL),
                                            metadata=ADMIN, timeout=10).audit_logs)

        deadline = time.monotonic() + 60
        while not rows():
            assert time.monotonic() < deadline, "the cancel never reached the audit log"
            time.sleep(0.2)
        time.sleep(2)  # several relay rounds: the entry is recorded once
        (row,) = rows()
        assert (row.actor, row.role, row.organization_id, row.target, row.outcome) == (
            "sam", "STAFF", shop.id, f"render_job:{job.id}", "ok")
        check = audit.VerifyAuditChain(audit_pb2.VerifyAuditChainRequest(), metadata=ADMIN,
                                       timeout=10)
        assert check.ok, check.problems
        # A refused second cancel is audited too.
        try:
            renders.CancelRender(render_pb2.CancelRenderRequest(id=job.id), metadata=staff,
                                 timeout=10)
            raise AssertionError("a canceled job was canceled again")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        deadline = time.monotonic() + 60
        while len(rows()) < 2:
            assert time.monotonic() < deadline, "the refused cancel was not audited"
            time.sleep(0.2)
        assert rows()[0].outcome == "error:FAILED_PRECONDITION"
    finally:
        deployment.stop()


def test_a_new_carpet_is_audited_even_with_the_credit_service_down(tmp_path):
    deployment = Deployment(tmp_path, RENDER_WORKERS="0",
                            modules=("credit_service", "render_service")).start()
    try:
        renders = deployment.renders(service=None)
        deployment.processes["credit_service"].kill()
        request = render_pb2.CreateCarpetRequest(sku="K-AUDIT", name="Audited kilim",
                                                 width_cm=100, length_cm=150, image=tiny_png())
        carpet = renders.CreateCarpet(request, metadata=ADMIN, timeout=10)
        try:
            renders.CreateCarpet(request, metadata=ADMIN, timeout=10)
            raise AssertionError("a SKU was added twice")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        deployment.processes["credit_service"].start()
        rows = wait_for_rows(deployment, CREATE_CARPET, 2)
        assert [(row.actor, row.role, row.target, row.outcome) for row in rows] == [
            ("ops", "ADMIN", "carpet", "error:ALREADY_EXISTS"),
            ("ops", "ADMIN", f"carpet:{carpet.id}", "ok")]
        assert all('"sku": "K-AUDIT"' in row.details for row in rows)
    finally:
        deployment.stop()
