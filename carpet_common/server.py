"""gRPC server bootstrap shared by the three processes.

`create_server` builds a started asyncio server (carpet_common.serving) with health and
reflection registered and returns it with the bound port (bind port 0 in tests).
`run_until_signal` blocks until SIGTERM/SIGINT, then flips health to NOT_SERVING (load balancers
stop sending) and stops with a grace period.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection as grpc_reflection

from carpet_common import tracing
from carpet_common.auth import SERVICE_TOKEN_HEADER
from carpet_common.interceptors import AroundInterceptor, AroundPipeline
from carpet_common.metrics import LONG_STREAMS
from carpet_common.serving import Bridge, ServingRules, on_serving_loop
from carpet_common.settings import Settings, SettingsError
from carpet_common.streams import StreamAdmission, StreamCounter, StreamLimits

logger = logging.getLogger(__name__)

# What a client interceptor hands a call on to: (call details, request) -> the call.
Continuation = Callable[[Any, object], Any]

SHUTDOWN_GRACE_S = 5.0
# From NOT_SERVING to refusing calls: time for the health watches of the callers' channels
# to hear it (milliseconds on a network; the Kubernetes manifests add a preStop wait for the
# endpoints' removal).
SHUTDOWN_DRAIN_S = 0.5
# Messages above this are refused by gRPC itself (RESOURCE_EXHAUSTED, "Received message larger
# than max"). Pictures are limited to 10 MB by the services, which say so with the number; this
# is set well above that, so a picture a little over the limit gets that readable refusal.
MAX_MESSAGE_BYTES = 24 * 1024 * 1024
MAX_CONNECTION_AGE_S = 600


# Options of every channel one service opens to another. The address may name several replicas
# (`ipv4:10.0.0.5:50051,10.0.0.6:50051`, or a `dns:` name with several records): calls are
# spread round-robin over those that answer, and a restarted replica is tried again within
# seconds (gRPC's default reconnect backoff grows to two minutes).
CLIENT_CHANNEL_OPTIONS = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 3000),
    # Each channel keeps its own connections: with gRPC's process-wide pool a new channel to an
    # address whose previous server went away inherits that link's backoff and fails fast.
    ("grpc.use_local_subchannel_pool", 1),
)


class ServiceTokenInterceptor(grpc.UnaryUnaryClientInterceptor,
                              grpc.UnaryStreamClientInterceptor):
    """Adds this process's own service token to every outgoing call (none: calls go as they
    are)."""

    def __init__(self, token: str | None):
        self._metadata = ((SERVICE_TOKEN_HEADER, token),) if token else ()

    def _with_token(self, details: Any) -> Any:
        if not self._metadata:
            return details
        return details._replace(metadata=[*(details.metadata or ()), *self._metadata])

    def intercept_unary_unary(self, continuation: Continuation, details: Any,
                              request: object) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Continuation, details: Any,
                               request: object) -> Any:
        return continuation(self._with_token(details), request)


@dataclass(frozen=True)
class ChannelSecurity:
    """How a process's channels to other services are secured.

    TLS when `roots` (the CA that signs the servers' certificates) is set; the process's own
    certificate is presented when `cert` and `key` are (mTLS: the certificate is its identity).
    `server_name`: the name every server's certificate must carry, checked instead of the
    dialled host, so a list of replicas (`ipv4:10.0.0.5:50051,10.0.0.6:50051`) or a `dns:` name
    with several records verifies each replica."""

    roots: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelSecurity:
        return cls(roots=settings.tls_ca or settings.tls_client_ca,
                   cert=settings.tls_cert, key=settings.tls_key,
                   server_name=settings.tls_server_name)


PLAINTEXT = ChannelSecurity()  # for loopback and tests


def service_channel(target: str, security: ChannelSecurity = PLAINTEXT, *,
                    service_token: str | None = None,
                    service_config: str | None = None) -> grpc.Channel:
    """A channel from one service to another, presenting this process's identity: its client
    certificate under mTLS, and `service_token` (SERVICE_TOKEN) on every call when given.
    `service_config`: gRPC service config JSON (retry policies).

    Every such channel watches each replica's health (gRPC client-side health checking): a
    replica that is stopping says NOT_SERVING first (`GrpcServer.stop`), and calls go to the
    others from then on, so a rolling restart fails no call."""
    config = {**json.loads(service_config or "{}"), "healthCheckConfig": {"serviceName": ""}}
    options: tuple[tuple[str, str | int], ...] = (
        *CLIENT_CHANNEL_OPTIONS, ("grpc.service_config", json.dumps(config)))
    if security.roots and security.server_name:
        options = (*options, ("grpc.ssl_target_name_override", security.server_name))
    channel = tracing.traced_channel(_transport_channel(target, security, options))
    return grpc.intercept_channel(channel, _ServiceCalls(target, service_token))


def _transport_channel(target: str, security: ChannelSecurity,
                       options: Sequence[tuple[str, object]]) -> grpc.Channel:
    if not security.roots:
        return grpc.insecure_channel(target, options=options)
    with open(security.roots, "rb") as roots:
        root_certificates = roots.read()
    key = cert = None
    if security.cert and security.key:
        with open(security.key, "rb") as key_file, open(security.cert, "rb") as cert_file:
            key, cert = key_file.read(), cert_file.read()
    credentials = grpc.ssl_channel_credentials(root_certificates, key, cert)
    return grpc.secure_channel(target, credentials, options=options)


class _ServiceCalls(ServiceTokenInterceptor):
    """The service token on every call, and the first UNAVAILABLE of the target logged with
    grpc's reason (a failed TLS handshake says why here, e.g. a certificate that does not name
    the server), once until a call succeeds again, so a broken link is visible without flooding
    the log. One interceptor for both: each layer of `intercept_channel` costs every call a
    chain of Python frames."""

    def __init__(self, target: str, token: str | None):
        super().__init__(token)
        self._target = target
        self._failing = False

    def _done(self, call: grpc.Future) -> None:
        code = call.code()
        if code == grpc.StatusCode.UNAVAILABLE and not self._failing:
            self._failing = True
            reason = call.debug_error_string() if hasattr(call, "debug_error_string") else ""
            logger.error("cannot reach %s: %s %s", self._target, call.details(), reason)
        elif code == grpc.StatusCode.OK:
            self._failing = False

    def _watch(self, call: Any) -> Any:
        call.add_done_callback(self._done)  # never blocks: `.future()` calls stay parallel
        return call

    def intercept_unary_unary(self, continuation: Continuation, details: Any,
                              request: object) -> Any:
        return self._watch(continuation(self._with_token(details), request))


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    client_ca: str | None = None  # set: clients must present a certificate (mTLS)


def tls_files(settings: Settings) -> TlsFiles | None:
    """The process's TLS settings, or None to serve plaintext."""
    if settings.tls_cert and settings.tls_key:
        return TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    return None


def is_loopback(address: str) -> bool:
    """Whether a listen address (`host:port`, `[v6]:port`, `unix:…`) is reachable only from
    this machine."""
    if address.startswith("unix:"):
        return True
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, 0.0.0.0 and :: all reach beyond this machine


def check_listen_address(setting: str, address: str, *, tls: bool,
                         allow_plaintext: bool) -> None:
    """Refuse to serve plaintext beyond this machine unless ALLOW_PLAINTEXT=1 says so (for a
    network where something else encrypts, such as a service mesh's sidecar)."""
    if not tls and not allow_plaintext and not is_loopback(address):
        raise SettingsError(f"{setting} is not a loopback address and TLS is not set up "
                            f"(TLS_CERT, TLS_KEY); set ALLOW_PLAINTEXT=1 to serve plaintext")


@dataclass
class GrpcServer:
    """A started asyncio server on the process's serving loop (carpet_common.serving), driven
    from ordinary threads."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]
    bridge: Bridge
    pool: futures.ThreadPoolExecutor
    # Background work the server's calls rely on (e.g. the ended-sessions list), stopped with it.
    background: list[Any] = field(default_factory=list)
    stopped: bool = False
    probe: grpc.aio.Server | None = None  # HEALTH_ADDR's listener, health only

    def stop(self, grace: float = SHUTDOWN_GRACE_S, drain: float = 0.0) -> None:
        """NOT_SERVING, then after `drain` seconds (a process told to stop: SHUTDOWN_DRAIN_S)
        no new calls; calls in hand get `grace` seconds."""
        if self.stopped:
            return
        self.stopped = True
        on_serving_loop(self._stop(grace, drain))
        self.pool.shutdown(wait=False)
        for work in self.background:
            work.stop()

    async def _stop(self, grace: float, drain: float) -> None:
        self.bridge.stopping.set()  # waiting streams end at once with UNAVAILABLE
        await self.health.enter_graceful_shutdown()  # every service -> NOT_SERVING
        # The drain: callers watching health (service_channel) move to other replicas before
        # this one refuses calls. Calls already taken are finished within `grace`; a call
        # that reached grpc's queue but not a handler when the server stops is cancelled.
        await asyncio.sleep(drain)
        await self.server.stop(grace)
        if self.probe is not None:
            await self.probe.stop(0)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(on_serving_loop(self.server.wait_for_termination(timeout)))


def _server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    with open(tls.key, "rb") as key_file, open(tls.cert, "rb") as cert_file:
        pair = (key_file.read(), cert_file.read())
    client_ca = None
    if tls.client_ca:
        with open(tls.client_ca, "rb") as ca_file:
            client_ca = ca_file.read()
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def create_server(
    address: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    *,
    interceptors: Sequence[AroundInterceptor] = (),
    max_workers: int = 16,
    tls: TlsFiles | None = None,
    unix_socket: str | None = None,
    share_port: bool = False,
    reflection: bool = True,
    long_streams: Collection[str] = (),
    stream_limits: StreamLimits | None = None,
    health_address: str | None = None,
) -> tuple[GrpcServer, int]:
    """Build, bind and start a server. `register(server)` adds the servicers;
    `service_names` are their full names, announced by health and reflection. `share_port`:
    sibling processes of `serve_in_processes` bind the same address (SO_REUSEPORT).
    `interceptors` run in order, the first outermost, on the `max_workers` worker threads
    (carpet_common.serving). `long_streams`: methods whose streams last as long as a client
    wants (like WatchRender), counted per caller and in all by `stream_limits`.
    `health_address` (HEALTH_ADDR): a second, plaintext listener serving the health service
    alone, for probes that cannot speak TLS (Kubernetes' gRPC probes)."""
    return on_serving_loop(_create_server(
        address, register, service_names, interceptors=interceptors, max_workers=max_workers,
        tls=tls, unix_socket=unix_socket, share_port=share_port, reflection=reflection,
        long_streams=long_streams, stream_limits=stream_limits or StreamLimits(),
        health_address=health_address))


async def _create_server(address: str, register: Callable[[grpc.aio.Server], None],
                         service_names: Sequence[str], *,
                         interceptors: Sequence[AroundInterceptor], max_workers: int,
                         tls: TlsFiles | None, unix_socket: str | None, share_port: bool,
                         reflection: bool, long_streams: Collection[str],
                         stream_limits: StreamLimits, health_address: str | None
                         ) -> tuple[GrpcServer, int]:
    counter = StreamCounter(stream_limits)
    LONG_STREAMS.set_function(counter.open_streams)
    pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc")
    # Unary calls beyond this many waiting for (or on) a worker are refused with
    # RESOURCE_EXHAUSTED instead of queueing without bound. A waiting call costs its message
    # only, so a burst (a shop's 500 shoppers submitting at once) queues; each client's rate
    # limit bounds how many of those messages are pictures.
    max_queued = max_workers * 64
    if tracing.enabled():  # outermost: the span covers the whole call, refusals included
        interceptors = (tracing.ServerInterceptor(), *interceptors)
    bridge = Bridge(AroundPipeline((*interceptors, StreamAdmission(counter, long_streams))),
                    pool, ServingRules(max_queued, frozenset(long_streams), counter))
    # A backstop above every limit of our own (health Watch streams are counted only here).
    backstop = 2 * (stream_limits.total + max_queued)
    server = grpc.aio.server(
        interceptors=[bridge],
        maximum_concurrent_rpcs=backstop,
        options=[
            # Calls arriving faster than the event loop picks them up wait in gRPC's queue,
            # which cancels them beyond 1,000 (3,000 at once) by default: a burst of waiting
            # clients is what this server is for.
            ("grpc.server.max_pending_requests", backstop),
            ("grpc.server.max_pending_requests_hard_limit", backstop),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Unless shared on purpose, a second process on the same port is an error.
            ("grpc.so_reuseport", 1 if share_port else 0),
            # Every connection is closed after at most ten minutes (clients reconnect by
            # themselves; calls in flight get a minute to finish), so no stream, not even a
            # health Watch, is held open forever.
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_S * 1000),
            ("grpc.max_connection_age_grace_ms", 60_000),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection:  # GRPC_REFLECTION=off removes it
        grpc_reflection.enable_server_reflection(
            (*service_names, health.SERVICE_NAME, grpc_reflection.SERVICE_NAME), server)
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, _server_credentials(tls))
    except RuntimeError:  # grpc's word for a port it could not bind
        port = 0
    if port == 0:
        raise OSError(f"could not bind gRPC address {address} (taken, or not this machine's)")
    if unix_socket is not None:  # a private local listener (plaintext; file permissions guard it)
        server.add_insecure_port(f"unix:{unix_socket}")
    probe = None
    if health_address is not None:
        probe = grpc.aio.server(options=[("grpc.so_reuseport", 1 if share_port else 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe)
        try:
            bound = probe.add_insecure_port(health_address)
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise OSError(f"could not bind HEALTH_ADDR {health_address} (taken, or not this "
                          f"machine's)")
    await server.start()
    if probe is not None:
        await probe.start()
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server, health_servicer, tuple(service_names), bridge, pool,
                      probe=probe), port


_stop_requested = threading.Event()


def catch_stop_signals() -> None:
    """From now on SIGTERM and SIGINT ask for a graceful stop (run_until_signal). Called before
    a process starts serving: a signal that arrived after the port answered but before the
    stop was awaited used to interrupt the start-up half-way, and the process hung."""

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        _stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def run_until_signal(servers: Sequence[GrpcServer], on_stop: Callable[[], None] | None = None,
                     grace: float = SHUTDOWN_GRACE_S) -> None:
    """Block the main thread until SIGTERM or SIGINT, then stop everything gracefully."""
    catch_stop_signals()  # a no-op when serve() caught them before starting
    # Woken twice a second, not once: Python runs a signal's handler on the main thread, and a
    # SIGTERM the kernel hands to another thread (gRPC's, the worker pool's) does not wake a
    # main thread asleep on a lock. Seen as a gateway replica that ignored SIGTERM under load
    # until it was killed, its calls in flight lost (tests/e2e/test_rolling_restart.py).
    while not _stop_requested.wait(0.5):
        pass
    if on_stop is not None:
        on_stop()
    for running in servers:
        running.stop(grace, drain=SHUTDOWN_DRAIN_S)
    # The spans still buffered: a forked serving process leaves by os._exit, which skips the
    # OpenTelemetry SDK's own flush at exit.
    tracing.shutdown()
    logger.info("stopped")


def _stop_with_parent(parent: int) -> None:
    """In a forked child: be sent SIGTERM (a graceful stop) when the supervisor dies, even by
    SIGKILL, so no orphan keeps serving the shared port with old settings (Linux's
    PR_SET_PDEATHSIG). A supervisor that died before this ran is caught by its pid."""
    import ctypes
    import ctypes.util

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        logger.warning("could not ask to stop with the supervisor (errno %d)", ctypes.get_errno())
    if os.getppid() != parent:
        os._exit(0)


def serve_in_processes(count: int, serve: Callable[[int], int]) -> int:
    """Run `serve(index)` in `count` forked processes that share the listening address (each
    binds it with SO_REUSEPORT and the kernel spreads connections), so one service uses more
    than one core despite the GIL. The parent only supervises: it passes SIGTERM/SIGINT on,
    starts again a child that died without being asked to stop, and returns the worst exit
    code of the shutdown. gRPC requires the fork to happen before any server or channel
    exists, which is why `serve` builds everything itself. With count 1, `serve(0)` runs in
    this process."""
    if count == 1:
        return serve(0)

    stopping = False

    supervisor = os.getpid()

    def spawn(index: int) -> int:
        pid = os.fork()
        if pid == 0:  # the child: serve, then leave without running the parent's cleanup
            # Asked to stop before serve() installs its own handlers: nothing to drain yet.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: os._exit(0))
            _stop_with_parent(supervisor)
            code = 1
            try:
                code = serve(index)
            finally:
                os._exit(code)
        return pid

    children = {spawn(index): index for index in range(count)}

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    while children:
        pid, status = os.wait()
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            worst = max(worst, code if code > 0 else (1 if code < 0 else 0))
        else:
            logger.error("serving process %d exited with %d; starting it again", index, code)
            children[spawn(index)] = index
    return worst
