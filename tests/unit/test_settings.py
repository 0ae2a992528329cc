import pytest

from carpet_common.settings import Settings, SettingsError, load_settings

GOOD_TOKEN = "a" * 24


def test_defaults_are_the_documented_ones():
    settings = load_settings({})
    assert settings.credit_database_url == "sqlite:///var/credit.db"
    assert settings.render_database_url == "sqlite:///var/render.db"
    assert (settings.credit_addr, settings.render_addr, settings.admin_grpc_addr,
            settings.admin_http_addr) == ("127.0.0.1:50051", "127.0.0.1:50052",
                                          "127.0.0.1:50053", "127.0.0.1:8080")
    assert settings.render_modes == {"preview": 1, "standard": 2, "hd": 4}
    assert settings.admin_tokens == {}
    assert (settings.jwt_audience, settings.jwt_issuer) == ("carpet-admin", "carpet")
    assert (settings.rate_limit_admin, settings.rate_limit_render) == ("120/minute", "600/minute")
    assert settings.render_workers == 2
    assert settings.seed_admin_email == "admin@example.com"
    assert settings.seed_credits == 100
    assert (settings.streams_per_process, settings.streams_per_principal,
            settings.reflection_per_principal) == (5000, 2000, 64)


def test_stream_limits_are_settings():
    settings = load_settings({"STREAMS_PER_PROCESS": "300", "STREAMS_PER_PRINCIPAL": "20",
                              "REFLECTION_PER_PRINCIPAL": "3"})
    assert (settings.streams_per_process, settings.streams_per_principal,
            settings.reflection_per_principal) == (300, 20, 3)
    with pytest.raises(SettingsError):
        load_settings({"STREAMS_PER_PRINCIPAL": "0"})


def test_webhook_delivery_retention():
    assert load_settings({}).webhook_delivery_retention_s == 30 * 24 * 3600
    assert load_settings({"WEBHOOK_DELIVERY_RETENTION": "7d"}).webhook_delivery_retention_s == (
        7 * 24 * 3600)
    assert load_settings({"WEBHOOK_DELIVERY_RETENTION": "forever"}
                         ).webhook_delivery_retention_s is None
    with pytest.raises(SettingsError):
        load_settings({"WEBHOOK_DELIVERY_RETENTION": "7"})


def test_the_connection_pool_covers_every_worker_thread():
    assert load_settings({"GRPC_MAX_WORKERS": "30", "DB_MAX_CONNECTIONS": "32"})
    with pytest.raises(SettingsError) as refused:
        load_settings({"GRPC_MAX_WORKERS": "30", "DB_MAX_CONNECTIONS": "31"})
    assert str(refused.value) == ("DB_MAX_CONNECTIONS must be at least GRPC_MAX_WORKERS + 2 "
                                  "(one connection per gRPC worker thread, the rest for "
                                  "background work)")


def test_several_admin_tokens_are_accepted_for_rotation():
    settings = load_settings({"ADMIN_TOKENS": f"alice:{GOOD_TOKEN},bob:{'b' * 30}"})
    assert settings.admin_tokens == {"alice": GOOD_TOKEN, "bob": "b" * 30}


def test_short_token_is_refused_without_echoing_it():
    with pytest.raises(SettingsError) as raised:
        load_settings({"ADMIN_TOKENS": "alice:short-secret-value"})
    assert "alice" in str(raised.value)
    assert "short-secret-value" not in str(raised.value)


@pytest.mark.parametrize("raw", ["nocolon", ":" + GOOD_TOKEN, f"a:{GOOD_TOKEN},a:{GOOD_TOKEN}"])
def test_malformed_admin_tokens_are_refused(raw):
    with pytest.raises(SettingsError):
        load_settings({"ADMIN_TOKENS": raw})


@pytest.mark.parametrize("raw", ["preview", "preview:0", "preview:x", ""])
def test_malformed_render_modes_are_refused(raw):
    with pytest.raises(SettingsError):
        load_settings({"RENDER_MODES": raw or ","})


def test_secrets_stay_out_of_repr():
    settings = load_settings({"ADMIN_TOKENS": f"alice:{GOOD_TOKEN}", "JWT_SECRET": "s" * 40,
                              "RENDER_API_KEY": "key-123456789"})
    text = repr(settings)
    assert GOOD_TOKEN not in text and "s" * 40 not in text and "key-123456789" not in text
    assert isinstance(settings, Settings)


@pytest.mark.parametrize("name, value", [
    ("JWT_SECRET", "s" * 31), ("AUDIT_HMAC_KEY", "k" * 31), ("SERVICE_TOKEN", "t" * 31),
    ("SERVICE_TOKENS", "web:" + "t" * 31), ("ALLOW_PLAINTEXT", "maybe"),
])
def test_weak_keys_and_unclear_switches_are_refused_without_echoing_them(name, value):
    with pytest.raises(SettingsError) as raised:
        load_settings({name: value})
    assert name in str(raised.value) and value not in str(raised.value)


def test_boundary_settings():
    settings = load_settings({"SERVICE_TOKENS": f"render:{'r' * 32},web:{'w' * 40}",
                              "SERVICE_TOKEN": "r" * 32, "AUDIT_HMAC_KEY": "k" * 32,
                              "RENDER_CLIENTS": "web, shop", "GRPC_REFLECTION": "off",
                              "ALLOW_PLAINTEXT": "1"})
    assert settings.service_tokens == {"render": "r" * 32, "web": "w" * 40}
    assert settings.render_clients == ("web", "shop")
    assert (settings.grpc_reflection, settings.allow_plaintext) == (False, True)
    assert settings.audit_hmac_key == b"k" * 32
    assert "r" * 32 not in repr(settings) and "k" * 32 not in repr(settings)
    defaults = load_settings({})
    assert (defaults.render_clients, defaults.grpc_reflection, defaults.allow_plaintext) == (
        ("web",), True, False)


def test_the_image_api_protocol_is_sync_or_async():
    assert load_settings({}).render_api_mode == "sync"
    assert load_settings({"RENDER_API_MODE": "async"}).render_api_mode == "async"
    with pytest.raises(SettingsError, match="RENDER_API_MODE must be sync or async"):
        load_settings({"RENDER_API_MODE": "webhook"})


def test_secrets_are_read_from_files_named_by_their_file_variables(tmp_path):
    secret = tmp_path / "jwt_secret"
    secret.write_text("j" * 40 + "\n")
    tokens = tmp_path / "admin_tokens"
    tokens.write_text("ops:" + "a" * 30)  # no final newline: taken as it is
    settings = load_settings({"JWT_SECRET_FILE": str(secret), "ADMIN_TOKENS_FILE": str(tokens)})
    assert settings.jwt_secret == "j" * 40
    assert settings.admin_tokens == {"ops": "a" * 30}
    with pytest.raises(SettingsError,
                       match=r"^JWT_SECRET_FILE cannot be read \(FileNotFoundError\)$"):
        load_settings({"JWT_SECRET_FILE": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="^set JWT_SECRET or JWT_SECRET_FILE, not both$"):
        load_settings({"JWT_SECRET_FILE": str(secret), "JWT_SECRET": "k" * 40})
    # Only the settings that hold secrets: others are not read from files.
    assert load_settings({"LOG_FORMAT_FILE": str(secret)}).log_format == "text"
