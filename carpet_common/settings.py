"""Every setting of every process, read from the environment in this one place.

`load_settings()` is called once at start by each process's entry point; everything else gets
the frozen `Settings` passed in. Secrets are excluded from `repr` so they never reach a log.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

MIN_ADMIN_TOKEN_LENGTH = 24
MIN_SERVICE_TOKEN_LENGTH = 32
MIN_SECRET_BYTES = 32  # JWT_SECRET and AUDIT_HMAC_KEY: HMAC-SHA256 keys of at least 256 bits
DEFAULT_RENDER_MODES = "preview:1,standard:2,hd:4"
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)


class SettingsError(ValueError):
    """A setting is malformed; the process refuses to start."""


@dataclass(frozen=True)
class Settings:
    credit_database_url: str = "sqlite:///var/credit.db"
    render_database_url: str = "sqlite:///var/render.db"
    credit_addr: str = "127.0.0.1:50051"
    render_addr: str = "127.0.0.1:50052"
    admin_grpc_addr: str = "127.0.0.1:50053"
    admin_http_addr: str = "127.0.0.1:8080"
    # name -> token; the name is the actor written to audit rows.
    admin_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_jwks_file: str | None = None
    jwt_audience: str = "carpet-admin"
    jwt_issuer: str = "carpet"
    renderer: str = "local"
    render_api_url: str | None = None
    render_api_key: str | None = field(default=None, repr=False)
    render_api_allow_http: bool = False  # plain http:// to the image API (a local fake only)
    render_api_mode: str = "sync"  # the image API's protocol: sync, or async (create, poll)
    # RENDER_FALLBACK=local: when the image API is down after its retries, render locally;
    # such a job is charged only if RENDER_FALLBACK_CHARGE is set.
    render_fallback: str = ""
    render_fallback_charge: bool = False
    # Each carpet after the first in a render on a measured floor costs this much more.
    render_extra_carpet_cost: int = 1
    render_modes: Mapping[str, int] = field(
        default_factory=lambda: parse_render_modes(DEFAULT_RENDER_MODES))
    render_workers: int = 2
    rate_limit_admin: str = "120/minute"
    rate_limit_render: str = "600/minute"
    rate_limit_storage: str = "memory://"
    rate_limit_images: str = "1200/minute"  # the console's pictures: a budget of their own
    large_adjustment: int = 10_000  # the console asks twice above this
    trusted_proxies: tuple[str, ...] = ()
    render_storage_dir: str = "var/renders"
    # How long room pictures / rendered outputs are kept, in seconds (None: forever).
    render_input_retention_s: int | None = 30 * 24 * 3600
    render_output_retention_s: int | None = None
    # How long quote requests (personal data) are kept, with their renders' pictures.
    lead_retention_s: int | None = 730 * 24 * 3600
    seed_org_name: str = "Default Organization"
    seed_admin_name: str = "Admin"
    seed_admin_email: str = "admin@example.com"
    seed_credits: int = 100
    metrics_addr: str | None = None
    health_addr: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # The CA that signs the servers' certificates, for this process's outgoing channels (default:
    # TLS_CLIENT_CA, one private CA for the deployment); set alone, channels use TLS without
    # client certificates (services then prove who they are with SERVICE_TOKEN).
    tls_ca: str | None = None
    # The name every server certificate carries, verified instead of the dialled host (needed
    # for a list of replicas or a dns: name).
    tls_server_name: str | None = None
    # name -> token of the services whose calls this process accepts (x-service-token).
    service_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    # This process's own token, presented on its outgoing calls.
    service_token: str | None = field(default=None, repr=False)
    # Services allowed on the render service's methods (internal backends).
    render_clients: tuple[str, ...] = ("web",)
    audit_hmac_key: bytes | None = field(default=None, repr=False)
    allow_plaintext: bool = False  # listen on a non-loopback address without TLS
    grpc_reflection: bool = True
    # Long-lived streams per process, per caller, reflection streams per caller
    # (carpet_common.streams).
    streams_per_process: int = 5000
    streams_per_principal: int = 2000
    reflection_per_principal: int = 64
    # Sign-in (`docs/security.md`).
    seed_admin_password: str | None = field(default=None, repr=False)
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    jwt_jwks_url: str | None = None  # an outside identity provider's keys
    # Not part of the public surface (docs/reference.md); operational knobs of this implementation.
    log_format: str = "text"  # "json" for one JSON object per line
    grpc_max_workers: int = 16
    # Processes serving one address together (SO_REUSEPORT); >1 uses more than one core.
    server_processes: int = 1
    db_max_connections: int = 20
    render_lease_seconds: int = 60  # a processing job whose lease ran out is claimed again
    render_hold_ttl_seconds: int = 900  # lifetime of a render's credit hold
    render_max_attempts: int = 5  # claims before a job that keeps crashing is failed
    # How often each process re-reads the ended sign-in sessions (carpet_common.sessions).
    session_check_interval_s: int = 15
    # Webhooks (`docs/webhooks.md`): plain http and private addresses only for local development.
    webhook_allow_private: bool = False
    # Seconds before each retry after a failed attempt; attempts = 1 + len (Standard Webhooks'
    # schedule: about 28 hours from the first attempt to the last).
    webhook_retry_schedule_s: tuple[int, ...] = DEFAULT_WEBHOOK_RETRY_SCHEDULE
    webhook_timeout_s: int = 10
    webhook_concurrency: int = 8  # deliveries in flight per credit-service process
    # Deliveries in flight per endpoint, all replicas: half the slots, the rest for others.
    webhook_endpoint_concurrency: int = 4
    # Finished deliveries (delivered, failed, canceled) older than this are deleted with their
    # attempts, and events left without a delivery with them (None: kept forever).
    webhook_delivery_retention_s: int | None = 30 * 24 * 3600
    # Megapixels of pictures decoded at once per process (carpet_common.pictures): about 10 MB
    # of memory each at worst, so the default bounds decoding to about 0.5 GB.
    decode_budget_mp: int = 48


def parse_admin_tokens(raw: str, setting: str = "ADMIN_TOKENS",
                       min_length: int = MIN_ADMIN_TOKEN_LENGTH) -> dict[str, str]:
    """`name:token[,name:token…]`; refuses short tokens so a weak one never goes live."""
    tokens: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, token = item.partition(":")
        if not sep or not name or not token:
            raise SettingsError(f"{setting} entries must look like name:token")
        if len(token) < min_length:
            # Name the entry, never the token.
            raise SettingsError(
                f"{setting}: token for {name!r} is shorter than {min_length} characters")
        if name in tokens:
            raise SettingsError(f"{setting}: name {name!r} appears twice")
        tokens[name] = token
    return tokens


def _secret(env: Mapping[str, str], name: str, min_length: int) -> str | None:
    value = env.get(name) or None
    if value is not None and len(value.encode()) < min_length:
        raise SettingsError(f"{name} is shorter than {min_length} bytes")
    return value


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    """`30d`, `12h`, `90m`, `3600s`, or `forever`; the unit is required."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw == "forever":
        return None
    number, unit = raw[:-1], raw[-1:]
    if unit not in _DURATION_UNITS or not number.isdigit() or int(number) <= 0:
        raise SettingsError(f"{name} must look like 30d, 12h, 90m or 3600s, or be 'forever'")
    return int(number) * _DURATION_UNITS[unit]


def _bounded_duration(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    value = _duration(env, name, default)
    if value is None or value > maximum:
        raise SettingsError(f"{name} must be at most {maximum} s")
    return value


def _schedule(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """`5s,5m,30m,2h`: the waits before each retry."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    waits = []
    for item in raw.split(","):
        wait = _duration({name: item}, name, None)
        if wait is None:
            raise SettingsError(f"{name} must be a list like 5s,5m,30m,2h")
        waits.append(wait)
    return tuple(waits)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise SettingsError(f"{name} must be 1/on or 0/off")


def parse_render_modes(raw: str) -> dict[str, int]:
    modes: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        mode, sep, cost = item.partition(":")
        if not sep or not mode or not cost.strip().isdigit() or int(cost) <= 0:
            raise SettingsError(f"RENDER_MODES entry {item!r} must look like mode:cost (cost > 0)")
        modes[mode.strip()] = int(cost)
    if not modes:
        raise SettingsError("RENDER_MODES names no mode")
    return modes


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


BACKGROUND_CONNECTIONS = 2  # the render status hub's, and one the background work shares
# Settings that may hold a secret, and so may be read from a file instead (`<NAME>_FILE`: a
# container's mounted secret, never in the environment a process listing shows).
FILE_SETTINGS = ("ADMIN_TOKENS", "SERVICE_TOKENS", "SERVICE_TOKEN", "JWT_SECRET",
                 "AUDIT_HMAC_KEY", "RENDER_API_KEY", "CREDIT_DATABASE_URL",
                 "RENDER_DATABASE_URL", "RATE_LIMIT_STORAGE", "SEED_ADMIN_PASSWORD")


def with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """`env` with each `<NAME>_FILE` of FILE_SETTINGS read into `<NAME>` (the file's text
    without its final newline). Setting both is refused: which one wins would be a guess."""
    named = {name: env[f"{name}_FILE"] for name in FILE_SETTINGS if env.get(f"{name}_FILE")}
    if not named:
        return env
    values = dict(env)
    for name, path in named.items():
        if env.get(name):
            raise SettingsError(f"set {name} or {name}_FILE, not both")
        try:
            with open(path, encoding="utf-8") as file:
                values[name] = file.read().removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(f"{name}_FILE cannot be read ({type(error).__name__})") from None
    return values


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = with_secret_files(os.environ if env is None else env)
    defaults = Settings()

    def optional(name: str) -> str | None:
        """The variable's value, None when unset or empty."""
        return env.get(name) or None

    def text(name: str, default: str) -> str:
        return optional(name) or default

    log_format = text("LOG_FORMAT", defaults.log_format)
    if log_format not in ("text", "json"):
        raise SettingsError("LOG_FORMAT must be text or json")
    renderer = text("RENDERER", defaults.renderer)
    if renderer not in ("local", "http"):
        raise SettingsError("RENDERER must be local or http")
    render_api_mode = text("RENDER_API_MODE", defaults.render_api_mode)
    if render_api_mode not in ("sync", "async"):
        raise SettingsError("RENDER_API_MODE must be sync or async")
    render_fallback = text("RENDER_FALLBACK", defaults.render_fallback)
    if render_fallback not in ("", "local"):
        raise SettingsError("RENDER_FALLBACK must be local or empty")

    settings = Settings(
        credit_database_url=text("CREDIT_DATABASE_URL", defaults.credit_database_url),
        render_database_url=text("RENDER_DATABASE_URL", defaults.render_database_url),
        credit_addr=text("CREDIT_ADDR", defaults.credit_addr),
        render_addr=text("RENDER_ADDR", defaults.render_addr),
        admin_grpc_addr=text("ADMIN_GRPC_ADDR", defaults.admin_grpc_addr),
        admin_http_addr=text("ADMIN_HTTP_ADDR", defaults.admin_http_addr),
        admin_tokens=parse_admin_tokens(env.get("ADMIN_TOKENS", "")),
        jwt_secret=_secret(env, "JWT_SECRET", MIN_SECRET_BYTES),
        jwt_jwks_file=optional("JWT_JWKS_FILE"),
        jwt_audience=text("JWT_AUDIENCE", defaults.jwt_audience),
        jwt_issuer=text("JWT_ISSUER", defaults.jwt_issuer),
        renderer=renderer,
        render_api_url=optional("RENDER_API_URL"),
        render_api_key=optional("RENDER_API_KEY"),
        render_api_allow_http=_flag(env, "RENDER_API_ALLOW_HTTP", False),
        render_api_mode=render_api_mode,
        render_fallback=render_fallback,
        render_fallback_charge=_flag(env, "RENDER_FALLBACK_CHARGE", False),
        render_extra_carpet_cost=_int(env, "RENDER_EXTRA_CARPET_COST",
                                      defaults.render_extra_carpet_cost, minimum=0),
        render_modes=parse_render_modes(text("RENDER_MODES", DEFAULT_RENDER_MODES)),
        render_workers=_int(env, "RENDER_WORKERS", defaults.render_workers),
        rate_limit_admin=text("RATE_LIMIT_ADMIN", defaults.rate_limit_admin),
        rate_limit_render=text("RATE_LIMIT_RENDER", defaults.rate_limit_render),
        rate_limit_storage=text("RATE_LIMIT_STORAGE", defaults.rate_limit_storage),
        rate_limit_images=text("RATE_LIMIT_IMAGES", defaults.rate_limit_images),
        large_adjustment=_int(env, "LARGE_ADJUSTMENT", defaults.large_adjustment, minimum=1),
        trusted_proxies=tuple(
            p.strip() for p in env.get("TRUSTED_PROXIES", "").split(",") if p.strip()),
        render_storage_dir=text("RENDER_STORAGE_DIR", defaults.render_storage_dir),
        render_input_retention_s=_duration(env, "RENDER_INPUT_RETENTION",
                                           defaults.render_input_retention_s),
        render_output_retention_s=_duration(env, "RENDER_OUTPUT_RETENTION",
                                            defaults.render_output_retention_s),
        lead_retention_s=_duration(env, "LEAD_RETENTION", defaults.lead_retention_s),
        seed_org_name=text("SEED_ORG_NAME", defaults.seed_org_name),
        seed_admin_name=text("SEED_ADMIN_NAME", defaults.seed_admin_name),
        seed_admin_email=text("SEED_ADMIN_EMAIL", defaults.seed_admin_email),
        seed_credits=_int(env, "SEED_CREDITS", defaults.seed_credits),
        metrics_addr=optional("METRICS_ADDR"),
        health_addr=optional("HEALTH_ADDR"),
        tls_cert=optional("TLS_CERT"),
        tls_key=optional("TLS_KEY"),
        tls_client_ca=optional("TLS_CLIENT_CA"),
        tls_ca=optional("TLS_CA"),
        tls_server_name=optional("TLS_SERVER_NAME"),
        service_tokens=parse_admin_tokens(env.get("SERVICE_TOKENS", ""), "SERVICE_TOKENS",
                                          MIN_SERVICE_TOKEN_LENGTH),
        service_token=_secret(env, "SERVICE_TOKEN", MIN_SERVICE_TOKEN_LENGTH),
        render_clients=tuple(name.strip() for name in
                             (env.get("RENDER_CLIENTS") or "web").split(",") if name.strip()),
        audit_hmac_key=(key.encode() if (key := _secret(env, "AUDIT_HMAC_KEY",
                                                         MIN_SECRET_BYTES)) else None),
        allow_plaintext=_flag(env, "ALLOW_PLAINTEXT", False),
        seed_admin_password=optional("SEED_ADMIN_PASSWORD"),
        access_token_ttl_s=_bounded_duration(env, "ACCESS_TOKEN_TTL",
                                             defaults.access_token_ttl_s, 24 * 3600),
        refresh_token_ttl_s=_bounded_duration(env, "REFRESH_TOKEN_TTL",
                                              defaults.refresh_token_ttl_s, 365 * 24 * 3600),
        jwt_jwks_url=optional("JWT_JWKS_URL"),
        grpc_reflection=_flag(env, "GRPC_REFLECTION", True),
        streams_per_process=_int(env, "STREAMS_PER_PROCESS", defaults.streams_per_process,
                                 minimum=1),
        streams_per_principal=_int(env, "STREAMS_PER_PRINCIPAL", defaults.streams_per_principal,
                                   minimum=1),
        reflection_per_principal=_int(env, "REFLECTION_PER_PRINCIPAL",
                                      defaults.reflection_per_principal, minimum=1),
        log_format=log_format,
        grpc_max_workers=_int(env, "GRPC_MAX_WORKERS", defaults.grpc_max_workers, minimum=1),
        server_processes=_int(env, "SERVER_PROCESSES", defaults.server_processes, minimum=1),
        db_max_connections=_int(env, "DB_MAX_CONNECTIONS", defaults.db_max_connections,
                                minimum=1),
        render_lease_seconds=_int(env, "RENDER_LEASE_SECONDS", defaults.render_lease_seconds,
                                  minimum=1),
        webhook_allow_private=_flag(env, "WEBHOOK_ALLOW_PRIVATE", False),
        webhook_retry_schedule_s=_schedule(env, "WEBHOOK_RETRY_SCHEDULE",
                                           defaults.webhook_retry_schedule_s),
        webhook_timeout_s=_bounded_duration(env, "WEBHOOK_TIMEOUT", defaults.webhook_timeout_s,
                                            60),
        webhook_concurrency=_int(env, "WEBHOOK_CONCURRENCY", defaults.webhook_concurrency,
                                 minimum=1),
        decode_budget_mp=_int(env, "DECODE_BUDGET_MP", defaults.decode_budget_mp, minimum=1),
        webhook_endpoint_concurrency=_int(env, "WEBHOOK_ENDPOINT_CONCURRENCY",
                                          defaults.webhook_endpoint_concurrency, minimum=1),
        webhook_delivery_retention_s=_duration(env, "WEBHOOK_DELIVERY_RETENTION",
                                               defaults.webhook_delivery_retention_s),
        render_hold_ttl_seconds=_int(env, "RENDER_HOLD_TTL_SECONDS",
                                     defaults.render_hold_ttl_seconds, minimum=60),
        render_max_attempts=_int(env, "RENDER_MAX_ATTEMPTS", defaults.render_max_attempts,
                                 minimum=1),
        session_check_interval_s=_bounded_duration(env, "SESSION_CHECK_INTERVAL",
                                                   defaults.session_check_interval_s, 60),
    )
    if settings.db_max_connections < settings.grpc_max_workers + BACKGROUND_CONNECTIONS:
        # Each gRPC worker thread keeps a pooled connection once it has served a call; a
        # pool no larger than the workers would leave the status hub and the background work
        # waiting for one that never comes back.
        raise SettingsError(f"DB_MAX_CONNECTIONS must be at least GRPC_MAX_WORKERS + "
                            f"{BACKGROUND_CONNECTIONS} (one connection per gRPC worker thread, "
                            f"the rest for background work)")
    return settings
