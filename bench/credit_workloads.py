"""Client-side workloads of the credit scenarios. Each factory runs inside a client process and
returns a callable doing one iteration; the callable returns how many operations it did."""
from __future__ import annotations

import datetime
import itertools
import os
import random
import sqlite3
from urllib.parse import urlparse

from bench.environment import channel_as
from bench.health import health_check_of
from protos.carpet.credit.v1 import credit_pb2, credit_pb2_grpc

TIMEOUT_S = 10


def _references(index: int):
    prefix = f"bench-{os.getpid()}-{index}-"
    return (prefix + str(n) for n in itertools.count())


health_check = health_check_of("address")


def get_balance(config: dict, index: int):
    stub = credit_pb2_grpc.CreditServiceStub(channel_as(config, config["address"], "render"))
    organizations = config["spread_organizations"]
    rng = random.Random(index)

    def operation() -> int:
        stub.GetBalance(credit_pb2.GetBalanceRequest(organization_id=rng.choice(organizations)),
                        timeout=TIMEOUT_S)
        return 1

    return operation


def _reserve_capture(config: dict, index: int, organizations: list[int]):
    # As the render service calls it: only `render` may hold credits.
    stub = credit_pb2_grpc.CreditServiceStub(channel_as(config, config["address"], "render"))
    references = _references(index)
    rng = random.Random(index)

    def operation() -> int:
        hold = stub.ReserveCredits(credit_pb2.ReserveCreditsRequest(
            organization_id=rng.choice(organizations), amount=1, reference=next(references)),
            timeout=TIMEOUT_S)
        stub.CaptureHold(credit_pb2.CaptureHoldRequest(hold_id=hold.id), timeout=TIMEOUT_S)
        return 2

    return operation


def reserve_capture_hot(config: dict, index: int):
    return _reserve_capture(config, index, [config["hot_organization"]])


def reserve_capture_hot_grants5(config: dict, index: int):
    """The hot organisation's workload on one whose balance is five grants
    (`docs/data-rules.md`)."""
    return _reserve_capture(config, index, [config["hot5_organization"]])


def reserve_capture_spread(config: dict, index: int):
    return _reserve_capture(config, index, config["spread_organizations"])


def database_transactions(config: dict, index: int):
    """The ceiling: the service's own reserve and capture transactions (the very statements of
    credit_service.ledger_sql) issued straight through the database driver, on the hot
    organisation, with no gRPC and no service code in between."""
    from credit_service import ledger_sql

    url = config["database_url"]
    organization = config["hot_organization"]
    references = _references(index)
    if url.startswith("sqlite"):
        connection = sqlite3.connect(urlparse(url).path, isolation_level=None, timeout=15)
        connection.execute("PRAGMA journal_mode=wal")
        connection.execute("PRAGMA synchronous=normal")
        placeholder, begin = "?", "BEGIN IMMEDIATE"
    else:
        import psycopg2

        connection = psycopg2.connect(url)
        connection.autocommit = True  # explicit BEGIN/COMMIT, as peewee does
        placeholder, begin = "%s", "BEGIN"
    postgres = not url.startswith("sqlite")
    cursor = connection.cursor()
    names = ("reserve_pg", "capture_pg", "draw_pg") if postgres else (
        "insert_hold", "hold_credits", "capture_hold", "charge_held", "insert_render_log",
        "draw", "hold_draws", "drawn", "spend_draws")
    statements = {name: ledger_sql.STATEMENTS[name] for name in names}
    # PostgreSQL: prepared once on the connection, as the service does (db.Statement).
    sql = {name: statement.prepare(cursor) if postgres else statement.sql_with(placeholder)
           for name, statement in statements.items()}

    def execute(name, **params):
        cursor.execute(sql[name], statements[name].values(params))
        return cursor.fetchall() if cursor.description else None

    def operation() -> int:
        try:
            return transactions()
        except Exception:
            cursor.execute("ROLLBACK")
            raise

    def transactions() -> int:
        reference = next(references)
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        hold = dict(organization_id=organization, user_id=None, amount=1, reference=reference,
                    expires_at=now + datetime.timedelta(minutes=15), now=now)
        take = dict(organization_id=organization, now=now, amount=1)  # one credit, in order
        cursor.execute(begin)
        if postgres:
            [(hold_id, *_state)] = execute("reserve_pg", **hold)
            execute("draw_pg", **take, hold_id=hold_id)
        else:
            [(hold_id,)] = execute("insert_hold", **hold)
            execute("hold_credits", amount=1, now=now, organization_id=organization)
            execute("draw", **take, hold_id=hold_id)
            execute("hold_draws", hold_id=hold_id)
            execute("drawn", hold_id=hold_id)
        cursor.execute("COMMIT")

        cursor.execute(begin)
        if postgres:
            execute("capture_pg", now=now, hold_id=hold_id, actor="bench")
        else:
            execute("capture_hold", now=now, hold_id=hold_id)
            [(balance,)] = execute("charge_held", amount=1, now=now,
                                   organization_id=organization)
            execute("insert_render_log", organization_id=organization, user_id=None,
                    hold_id=hold_id, delta=-1, balance_after=balance, reference=reference,
                    actor="bench", now=now)
            execute("spend_draws", hold_id=hold_id)
        cursor.execute("COMMIT")
        return 2

    return operation
