"""The simulator can fail: for each invariant, a deliberately broken variant of the product's
code (a missing condition, a skipped step, a change applied twice), applied here with
monkeypatch and never in the product, is caught within the stated number of steps."""
from __future__ import annotations

import datetime
import logging

import pytest

from carpet_common.db import Statement
from credit_service import audited, controls, grants, ledger, ledger_sql
from render_service import jobs

from . import runner


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _without(statement: Statement, condition: str) -> Statement:
    assert condition in statement.text
    return Statement(statement.text.replace(condition, ""))


def _capture_ended_holds(monkeypatch):
    """A capture that checks only that the hold was not captured (a released or expired hold
    is charged)."""
    statement = ledger_sql._CAPTURE_HOLD
    assert "AND state = 'held'" in statement.text
    monkeypatch.setattr(ledger_sql, "_CAPTURE_HOLD", Statement(
        statement.text.replace("AND state = 'held'", "AND state <> 'captured'")))


def _release_without_state_check(monkeypatch):
    """A release that releases a hold in any state (an expired one is released again)."""
    monkeypatch.setattr(ledger_sql, "_RELEASE_HOLD", _without(ledger_sql._RELEASE_HOLD,
                                                              " AND state = 'held'"))


def _draws_never_returned(monkeypatch):
    """A released or expired hold's credit never goes back to its grants."""
    monkeypatch.setattr(grants, "lapse", lambda *args, **kwargs: None)


def _no_spend_limit(monkeypatch):
    monkeypatch.setattr(controls, "check_limits", lambda *args, **kwargs: None)


def _no_replay(monkeypatch):
    """The idempotency key is claimed but an earlier call's answer is never found."""
    monkeypatch.setattr(audited, "_stored_response", lambda *args: None)
    real_claim = audited._claim_key

    def claim_or_ignore(method, key, fingerprint):
        try:
            return real_claim(method, key, f"{fingerprint}-{id(object())}")
        except Exception:  # noqa: BLE001 - the duplicate record: carry on as a new call
            return None

    monkeypatch.setattr(audited, "_claim_key", claim_or_ignore)


def _adjustment_not_audited(monkeypatch):
    monkeypatch.setattr(audited, "append_audit", lambda *args, **kwargs: None)


def _event_recorded_twice(monkeypatch):
    real = ledger.record_event

    def twice(*args, **kwargs):
        real(*args, **kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ledger, "record_event", twice)


def _success_without_capture(monkeypatch):
    """A job whose hold expired before its capture is marked a success anyway (naming a
    credit-log row that does not exist, as the database's CHECK requires one)."""
    from render_service.models import RenderJob
    from render_service.worker import HOLD_EXPIRED_TEXT

    real = jobs.finish_failed

    def finish(job_id, owner, error_text, now, *, release_pending):
        if error_text == HOLD_EXPIRED_TEXT:
            cost = RenderJob.get_by_id(job_id).cost
            return jobs.finish_success(job_id, owner, cost, 10**9 + job_id, now)
        return real(job_id, owner, error_text, now, release_pending=release_pending)

    monkeypatch.setattr(jobs, "finish_failed", finish)


def _holds_expired_early(monkeypatch):
    """The sweeper's overdue condition an hour out: holds expire before their time."""
    real = ledger._expire_overdue
    monkeypatch.setattr(ledger, "_expire_overdue",
                        lambda organization_id, now: real(organization_id,
                                                          now + datetime.timedelta(hours=1)))


# (mutation, the invariant its violation names, at most this many steps to catch it)
MUTATIONS = [
    (_capture_ended_holds, "nothing negative", 3000),
    (_release_without_state_check, "hold resolved twice", 3000),
    (_holds_expired_early, "hold resolved twice", 3000),
    (_draws_never_returned, "credit conserved", 3000),
    (_no_spend_limit, "spend limit", 3000),
    (_no_replay, "idempotency", 3000),
    (_adjustment_not_audited, "verify", 3000),
    (_event_recorded_twice, "webhook", 3000),
    (_success_without_capture, "one credit outcome", 6000),
]


@pytest.mark.parametrize("mutate, invariant, within", MUTATIONS,
                         ids=[mutation.__name__.strip("_") for mutation, _, _ in MUTATIONS])
def test_the_simulator_catches_a_broken_variant(monkeypatch, mutate, invariant, within):
    mutate(monkeypatch)
    results = runner.run_seeds(1, within, report=lambda line: None)
    failed = results[-1]
    assert failed.failed, f"{mutate.__name__} survived {within} steps"
    steps_taken = sum(result.steps_run for result in results)
    assert steps_taken <= within
    assert failed.violations[0].startswith(invariant), failed.violations[:3]
