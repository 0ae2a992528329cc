"""PostgreSQL connections terminated under a running server (pg_terminate_backend): the call
that hits a dead connection answers UNAVAILABLE (safe to retry) and the next calls work."""
import grpc
import psycopg2
import pytest

from protos.carpet.credit.v1 import credit_pb2
from tests.builders import create_org
from tests.conftest import PG_URL


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_terminated_connections_recover(credit_server, credit_db_url):
    org = create_org(credit_server, "Acme", 10)
    database = credit_db_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
        assert cursor.fetchone()[0] >= 1
    admin.close()

    outcomes = []
    for _ in range(60):  # more calls than server threads: every thread meets its dead link
        try:
            credit_server.credits.GetBalance(
                credit_pb2.GetBalanceRequest(organization_id=org.id), timeout=10)
            outcomes.append("OK")
        except grpc.RpcError as error:
            outcomes.append(error.code().name)
    assert set(outcomes) <= {"OK", "UNAVAILABLE"}
    assert outcomes[-10:] == ["OK"] * 10
    balance = credit_server.credits.GetBalance(
        credit_pb2.GetBalanceRequest(organization_id=org.id), timeout=10)
    assert balance.balance == 10


def test_a_connection_that_cannot_be_opened_is_unavailable(tmp_path):
    """The database refusing a new connection (restarting, or out of connections: PostgreSQL's
    "too many clients") is UNAVAILABLE, safe to retry, like a connection lost mid-call; it
    once escaped as INTERNAL."""
    from peewee import SqliteDatabase

    from carpet_common.interceptors import DatabaseConnectionInterceptor, ErrorMappingInterceptor
    from carpet_common.server import create_server

    unreachable = SqliteDatabase(str(tmp_path / "no-such-directory" / "carpet.db"))
    echo = grpc.method_handlers_generic_handler("test.Echo", {
        "Call": grpc.unary_unary_rpc_method_handler(lambda request, context: request)})
    running, port = create_server(
        "127.0.0.1:0", lambda server: server.add_generic_rpc_handlers((echo,)), ("test.Echo",),
        interceptors=[ErrorMappingInterceptor(), DatabaseConnectionInterceptor(unreachable)])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary("/test.Echo/Call")(b"ping", timeout=10)
        assert (refused.value.code(), refused.value.details()) == (
            grpc.StatusCode.UNAVAILABLE, "database unavailable, retry")
    finally:
        running.stop(grace=0)
