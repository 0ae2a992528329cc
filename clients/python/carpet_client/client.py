"""CarpetClient: one channel per service, built once, presenting the backend's identity on
every call; a deadline on every call; UNAVAILABLE (a replica restarting, a connection refused)
retried with backoff within that deadline, but only for calls that can be repeated safely —
reads, and SubmitRender, which always carries an idempotency key; refusals raised as typed
errors (carpet_client.errors)."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc

from carpet_client._pb.carpet.credit.v1 import (
    account_pb2,
    account_pb2_grpc,
    credit_pb2,
    credit_pb2_grpc,
)
from carpet_client._pb.carpet.render.v1 import render_pb2, render_pb2_grpc
from carpet_client.errors import Unavailable, typed

DEFAULT_TIMEOUT_S = 10.0
TERMINAL = (render_pb2.RENDER_STATUS_SUCCESS, render_pb2.RENDER_STATUS_FAILED)
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.2, 2.0


@dataclass(frozen=True)
class Identity:
    """Who the backend is: a service token (`x-service-token`), a client certificate (mTLS,
    the deployment's CA), or — for tools acting for a person — a bearer JWT."""

    service_token: str | None = None
    bearer_token: str | None = None
    ca_file: str | None = None  # TLS: the servers' CA
    cert_file: str | None = None  # mTLS: this backend's certificate and key
    key_file: str | None = None
    server_name: str | None = None  # the name the servers' certificates carry

    @classmethod
    def service(cls, token: str) -> Identity:
        return cls(service_token=token)

    @classmethod
    def person(cls, jwt: str) -> Identity:
        return cls(bearer_token=jwt)

    @classmethod
    def certificate(cls, ca_file: str, cert_file: str, key_file: str,
                    server_name: str | None = None) -> Identity:
        return cls(ca_file=ca_file, cert_file=cert_file, key_file=key_file,
                   server_name=server_name)

    def metadata(self) -> list[tuple[str, str]]:
        if self.bearer_token:
            return [("authorization", f"Bearer {self.bearer_token}")]
        if self.service_token:
            return [("x-service-token", self.service_token)]
        return []

    def channel(self, address: str) -> grpc.Channel:
        # Reconnect quickly after a refused connection (a replica restarting).
        options = [("grpc.initial_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        if self.ca_file:
            def read(path):
                with open(path, "rb") as handle:
                    return handle.read()

            credentials = grpc.ssl_channel_credentials(
                read(self.ca_file), read(self.key_file) if self.key_file else None,
                read(self.cert_file) if self.cert_file else None)
            if self.server_name:
                options.append(("grpc.ssl_target_name_override", self.server_name))
            channel = grpc.secure_channel(address, credentials, options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        return grpc.intercept_channel(channel, _Credentials(self.metadata()))


class _Credentials(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, metadata: list[tuple[str, str]]):
        self._metadata = metadata

    def _with(self, details):
        return details._replace(metadata=[*(details.metadata or ()), *self._metadata])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with(details), request)


class CarpetClient:
    def __init__(self, render_addr: str, credit_addr: str | None = None,
                 identity: Identity | None = None, *, timeout: float = DEFAULT_TIMEOUT_S):
        identity = identity or Identity()
        self.timeout = timeout
        self._channels = [identity.channel(render_addr)]
        self.renders = render_pb2_grpc.RenderServiceStub(self._channels[0])
        self.credits = self.accounts = None
        if credit_addr:
            self._channels.append(identity.channel(credit_addr))
            self.credits = credit_pb2_grpc.CreditServiceStub(self._channels[1])
            self.accounts = account_pb2_grpc.AccountServiceStub(self._channels[1])

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> CarpetClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, *, repeatable: bool = True):
        """One call with the client's deadline; a `repeatable` one is sent again after
        UNAVAILABLE, with backoff, while the deadline lasts. Changes without an idempotency key
        pass repeatable=False: whether a lost answer's change happened is the caller's to
        find out."""
        deadline = time.monotonic() + self.timeout
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                return method(request, timeout=max(0.001, deadline - time.monotonic()))
            except grpc.RpcError as error:
                failure = typed(error)
                if not (repeatable and isinstance(failure, Unavailable)
                        and time.monotonic() + backoff < deadline):
                    raise failure from None
            time.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    # ---- catalogue ------------------------------------------------------------------------

    def list_carpets(self, organization_id: int = 0, **filters) -> Iterator[render_pb2.Carpet]:
        """Every carpet an organisation's shoppers may see: its own catalogue and the shared
        one (ListCarpetsRequest's filters: query, material, include_archived), newest first,
        each with its sizes."""
        request = render_pb2.ListCarpetsRequest(page_size=500, organization_id=organization_id,
                                                **filters)
        while True:
            page = self._call(self.renders.ListCarpets, request)
            yield from page.carpets
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    # ---- renders --------------------------------------------------------------------------

    def submit_render(self, organization_id: int, carpet_id: int, mode: str, *,
                      room_image: bytes = b"", user_id: int = 0,
                      idempotency_key: str | None = None,
                      placement: Sequence[tuple[float, float]] = (),
                      carpet_size_id: int = 0) -> render_pb2.RenderJob:
        """A queued job with its credits reserved. A key is made when none is given, so the
        channel's retries (and yours, with the same key) never submit twice. `placement`: the
        carpet's four corners on the room photo, as (x, y) fractions of its width and height
        (none: the renderer's default place). `carpet_size_id`: one of the carpet's sizes
        (0: its first)."""
        return self._call(self.renders.SubmitRender, render_pb2.SubmitRenderRequest(
            organization_id=organization_id, carpet_id=carpet_id, mode=mode,
            room_image=room_image, user_id=user_id, carpet_size_id=carpet_size_id,
            idempotency_key=idempotency_key or uuid.uuid4().hex,
            placement=render_pb2.Placement(carpet_corners=[
                render_pb2.Point(x=x, y=y) for x, y in placement]) if placement else None))

    def get_render(self, job_id: int) -> render_pb2.RenderJob:
        return self._call(self.renders.GetRender, render_pb2.GetRenderRequest(id=job_id))

    def cancel_render(self, job_id: int) -> render_pb2.RenderJob:
        return self._call(self.renders.CancelRender, render_pb2.CancelRenderRequest(id=job_id),
                          repeatable=False)

    def list_renders(self, **filters) -> Iterator[render_pb2.RenderJob]:
        """Every job matching the filters (ListRendersRequest's fields), newest first."""
        request = render_pb2.ListRendersRequest(page_size=500, **filters)
        while True:
            page = self._call(self.renders.ListRenders, request)
            yield from page.renders
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def render_output(self, job_id: int) -> tuple[bytes, str]:
        """The rendered picture and its content type."""
        try:
            chunks = list(self.renders.GetRenderOutput(
                render_pb2.GetRenderOutputRequest(id=job_id), timeout=self.timeout * 6))
        except grpc.RpcError as error:
            raise typed(error) from None
        return b"".join(chunk.data for chunk in chunks), chunks[0].content_type if chunks else ""

    def wait(self, job_id: int, timeout: float = 300.0) -> render_pb2.RenderJob:
        """The job once it has ended (success or failed), following WatchRender; a watch cut
        by a restarting replica is opened again until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED",
                                  f"render {job_id} did not end within {timeout} s")
            try:
                for job in self.renders.WatchRender(render_pb2.WatchRenderRequest(id=job_id),
                                                    timeout=remaining):
                    if job.status in TERMINAL:
                        return job
            except grpc.RpcError as error:
                failure = typed(error)
                if not isinstance(failure, Unavailable):
                    raise failure from None
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def submit_and_wait(self, organization_id: int, carpet_id: int, mode: str, *,
                        room_image: bytes = b"", user_id: int = 0,
                        idempotency_key: str | None = None,
                        placement: Sequence[tuple[float, float]] = (),
                        carpet_size_id: int = 0,
                        timeout: float = 300.0) -> render_pb2.RenderJob:
        """Submit, then watch until the job ends; returns the finished job (check its status:
        a render that failed is a job in RENDER_STATUS_FAILED with its error text)."""
        job = self.submit_render(organization_id, carpet_id, mode, room_image=room_image,
                                 user_id=user_id, idempotency_key=idempotency_key,
                                 placement=placement, carpet_size_id=carpet_size_id)
        if job.status in TERMINAL:
            return job
        return self.wait(job.id, timeout)

    # ---- credit ---------------------------------------------------------------------------

    def _credit(self):
        if self.credits is None:
            raise ValueError("CarpetClient was made without credit_addr")
        return self.credits

    def balance(self, organization_id: int) -> credit_pb2.Balance:
        return self._call(self._credit().GetBalance,
                          credit_pb2.GetBalanceRequest(organization_id=organization_id))

    def organization(self, organization_id: int) -> account_pb2.Organization:
        self._credit()
        return self._call(self.accounts.GetOrganization,
                          account_pb2.GetOrganizationRequest(id=organization_id))
