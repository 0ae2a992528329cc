"""Crashes with real processes: the render service killed with SIGKILL mid-render, the credit
service stopped during submissions and during captures, and (PostgreSQL) two render-service
processes sharing 200 jobs. Every job converges, is charged at most once, and `verify` passes
on both databases."""
import time

import grpc
import pytest

from protos.carpet.credit.v1 import account_pb2, account_pb2_grpc, credit_pb2, credit_pb2_grpc
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.fake_image_api import FakeImageApi, tiny_png
from tests.helpers import identified_channel
from tests.processes import ServiceProcess, run_cli

ADMIN_TOKEN = "crash-test-admin-token-0123456789"
ADMIN = (("x-admin-token", ADMIN_TOKEN),)
FINAL = (render_pb2.RENDER_STATUS_SUCCESS, render_pb2.RENDER_STATUS_FAILED)


class Stack:
    """A credit service and render-service processes on the test's databases."""

    def __init__(self, tmp_path, credit_db_url, render_db_url, api_url, **extra_env):
        self.tmp_path = tmp_path
        self.env = {
            "CREDIT_DATABASE_URL": credit_db_url, "RENDER_DATABASE_URL": render_db_url,
            "CREDIT_ADDR": f"127.0.0.1:{free_port()}", "ADMIN_TOKENS": f"ops:{ADMIN_TOKEN}",
            "RENDERER": "http", "RENDER_API_URL": api_url, "RENDER_API_ALLOW_HTTP": "1",
            "RENDER_API_KEY": "sk-crash-test-key-0123456789",
            "RENDER_STORAGE_DIR": str(tmp_path / "renders"), "RENDER_LEASE_SECONDS": "2",
            "RENDER_WORKERS": "2", "RATE_LIMIT_RENDER": "off", "LOG_FORMAT": "json",
        }
        self.env.update(extra_env)
        self.credit = ServiceProcess("credit_service", self.env["CREDIT_ADDR"], self.env,
                                     str(tmp_path / "credit.log"))
        self.renders: list[ServiceProcess] = []
        self._channels = []

    def add_render(self) -> ServiceProcess:
        address = f"127.0.0.1:{free_port()}"
        process = ServiceProcess("render_service", address, {**self.env, "RENDER_ADDR": address},
                                 str(self.tmp_path / f"render-{len(self.renders)}.log"))
        self.renders.append(process)
        return process.start()

    def channel(self, address, service=None):
        channel = identified_channel(address, service)
        self._channels.append(channel)
        return channel

    def credit_stubs(self):
        channel = self.channel(self.credit.address, "render")
        return (account_pb2_grpc.AccountServiceStub(channel),
                credit_pb2_grpc.CreditServiceStub(channel))

    def render_stub(self, index=0):
        """The render service as an internal backend (`web`) calls it."""
        return render_pb2_grpc.RenderServiceStub(self.channel(self.renders[index].address,
                                                              "web"))

    def close(self):
        for channel in self._channels:
            channel.close()
        for process in [*self.renders, self.credit]:
            process.stop()


@pytest.fixture
def stack_factory(tmp_path, credit_db_url, render_db_url):
    stacks = []

    def make(api_url, **extra_env):
        stack = Stack(tmp_path, credit_db_url, render_db_url, api_url, **extra_env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


def prepare(stack, credits=100):
    accounts, _ = stack.credit_stubs()
    org = accounts.CreateOrganization(account_pb2.CreateOrganizationRequest(
        name="Acme", initial_credits=credits), metadata=ADMIN, timeout=10)
    carpet = stack.render_stub().CreateCarpet(render_pb2.CreateCarpetRequest(
        sku="K-1", name="Kilim", width_cm=100, length_cm=150, image=tiny_png()), timeout=10)
    return org, carpet


def submit(stub, org, carpet, mode="standard"):
    return stub.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=org.id, carpet_id=carpet.id, mode=mode), timeout=30)


def wait_until(predicate, timeout=60.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(interval)


def final_jobs(stub, ids):
    jobs = [stub.GetRender(render_pb2.GetRenderRequest(id=i), timeout=10) for i in ids]
    return jobs if all(job.status in FINAL for job in jobs) else None


def render_charges(stack, org):
    _, credits = stack.credit_stubs()
    return list(credits.ListCreditLogs(credit_pb2.ListCreditLogsRequest(
        organization_id=org.id, kind=credit_pb2.CREDIT_LOG_KIND_RENDER, page_size=500),
        metadata=ADMIN, timeout=10).logs)


def both_verify(stack):
    credit = run_cli("credit_service", "verify", stack.env)
    renders = run_cli("ops", "reconcile", stack.env)
    return credit.returncode == 0 and renders.returncode == 0, credit.stdout + renders.stdout


def assert_converged(stack, org, jobs, starting_credits):
    charges = render_charges(stack, org)
    charged = {log.reference: log for log in charges}
    assert len(charged) == len(charges), "a job was charged twice"
    for job in jobs:
        reference = f"render-job:{job.id}"
        if job.status == render_pb2.RENDER_STATUS_SUCCESS:
            assert charged[reference].id == job.credit_log_id
            assert job.credits_charged == -charged[reference].delta
        else:
            assert reference not in charged and job.credits_charged == 0
    _, credits = stack.credit_stubs()
    balance = credits.GetBalance(credit_pb2.GetBalanceRequest(organization_id=org.id),
                                 timeout=10)
    assert balance.balance == starting_credits - sum(j.credits_charged for j in jobs)
    wait_until(lambda: both_verify(stack)[0], timeout=30)


@pytest.mark.usefixtures("engine")
def test_render_service_killed_mid_render_converges(stack_factory):
    with FakeImageApi(["slow:4", "ok"]) as api:
        stack = stack_factory(api.url)
        stack.credit.start()
        render = stack.add_render()
        org, carpet = prepare(stack)
        job = submit(stack.render_stub(), org, carpet)
        wait_until(lambda: api.total_calls() == 1)  # the render is in flight
        render.kill()
        render.start()
        stub = stack.render_stub(0)
        wait_until(lambda: final_jobs(stub, [job.id]), timeout=60)
        [done] = final_jobs(stub, [job.id])
        assert done.status == render_pb2.RENDER_STATUS_SUCCESS, done.error_text
        assert done.credits_charged == 2
        assert_converged(stack, org, [done], 100)


@pytest.mark.usefixtures("engine")
def test_credit_service_down_during_submissions(stack_factory):
    with FakeImageApi(["ok"]) as api:
        stack = stack_factory(api.url, RENDER_WORKERS="0")  # keep the early job queued
        stack.credit.start()
        stack.add_render()
        org, carpet = prepare(stack)
        stub = stack.render_stub()
        queued = submit(stub, org, carpet)
        stack.credit.kill()
        with pytest.raises(grpc.RpcError) as raised:
            submit(stub, org, carpet)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        refused = stub.ListRenders(render_pb2.ListRendersRequest(
            status=render_pb2.RENDER_STATUS_FAILED), timeout=10).renders
        assert [job.error_text for job in refused] == ["credit service unavailable"]
        stack.credit.start()
        stack.renders[0].stop()
        stack.env["RENDER_WORKERS"] = "2"
        stack.renders[0].env["RENDER_WORKERS"] = "2"
        stack.renders[0].start()
        stub = stack.render_stub(0)
        ids = [queued.id, refused[0].id]
        wait_until(lambda: final_jobs(stub, ids), timeout=60)
        jobs = final_jobs(stub, ids)
        assert [job.status for job in jobs] == [render_pb2.RENDER_STATUS_SUCCESS,
                                                render_pb2.RENDER_STATUS_FAILED]
        assert_converged(stack, org, jobs, 100)


@pytest.mark.usefixtures("engine")
def test_credit_service_down_during_captures(stack_factory):
    with FakeImageApi(["slow:3"]) as api:
        stack = stack_factory(api.url)
        stack.credit.start()
        stack.add_render()
        org, carpet = prepare(stack)
        stub = stack.render_stub()
        ids = [submit(stub, org, carpet).id for _ in range(2)]
        wait_until(lambda: api.total_calls() == 2)  # both renders in flight
        stack.credit.kill()
        # Both renders finish and their captures find the credit service down: deferred, the
        # jobs still processing (rendered, not yet charged).
        wait_until(lambda: all(f"capture of job {job_id} deferred" in stack.renders[0].log()
                               for job_id in ids), timeout=60)
        deferred = [stub.GetRender(render_pb2.GetRenderRequest(id=job_id), timeout=10)
                    for job_id in ids]
        assert [(job.status, job.credits_charged) for job in deferred] == [
            (render_pb2.RENDER_STATUS_PROCESSING, 0)] * 2
        stack.credit.start()
        wait_until(lambda: final_jobs(stub, ids), timeout=90)
        jobs = final_jobs(stub, ids)
        assert all(job.status == render_pb2.RENDER_STATUS_SUCCESS for job in jobs), jobs
        assert all(count == 1 for count in api.calls.values()), api.calls  # never re-rendered
        assert_converged(stack, org, jobs, 100)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_two_render_processes_process_each_job_once(stack_factory):
    with FakeImageApi(["ok"]) as api:
        stack = stack_factory(api.url, RENDER_WORKERS="4", RENDER_LEASE_SECONDS="30")
        stack.credit.start()
        stack.add_render()
        stack.add_render()
        org, carpet = prepare(stack, credits=1000)
        stubs = [stack.render_stub(0), stack.render_stub(1)]
        ids = [submit(stubs[i % 2], org, carpet, mode="preview").id for i in range(200)]
        wait_until(lambda: final_jobs(stubs[0], ids), timeout=240, interval=1.0)
        jobs = final_jobs(stubs[0], ids)
        assert all(job.status == render_pb2.RENDER_STATUS_SUCCESS for job in jobs)
        assert sorted(api.calls) == sorted(ids)
        assert set(api.calls.values()) == {1}  # each job rendered exactly once
        assert_converged(stack, org, jobs, 1000)
