"""When tracing is on, and what it refuses (carpet_common.tracing); the trace across the three
processes is tests/e2e/test_tracing.py."""
import pytest

from carpet_common import db, tracing
from carpet_common.settings import SettingsError
from tests.processes import run_cli


@pytest.mark.parametrize(("environ", "on"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, True),
])
def test_tracing_is_on_only_when_the_otel_settings_ask(environ, on):
    assert tracing.wanted(environ) is on


@pytest.mark.parametrize(("environ", "named"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_a_setting_it_cannot_honour_is_refused_by_name(environ, named):
    with pytest.raises(SettingsError, match=named):
        tracing.configure("test", environ)
    assert not tracing.enabled()


def test_a_process_refuses_to_start_on_it(tmp_path):
    result = run_cli("credit_service", "verify", {
        "CREDIT_DATABASE_URL": f"sqlite:///{tmp_path}/credit.db", "OTEL_TRACES_EXPORTER": "jaeger"})
    assert result.returncode == 2
    assert result.stderr.startswith("configuration error: OTEL_TRACES_EXPORTER: jaeger is not "
                                    "supported"), result.stderr


def test_off_nothing_is_wrapped(tmp_path):
    """Off (the default), statements run through peewee's own classes and the server
    interceptor wraps nothing: tracing costs an untraced process nothing per call."""
    assert not tracing.enabled()
    database = db.open_database(f"sqlite:///{tmp_path}/plain.db")
    assert type(database) is db.SerializedSqliteDatabase
    assert tracing.ServerInterceptor().around("/carpet.credit.v1.CreditService/GetBalance") is None
    assert tracing.current_traceparent() == "" and tracing.current_ids() is None
