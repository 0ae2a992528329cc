"""Sign-in as plain functions (credit_service.signin) on the migrated in-memory database: the
lockout's counting, the session chain and every way a session ends, each checked by its exact
answer and by the rows it leaves. The end-to-end tests (tests/e2e/test_sign_in.py) show the
same rules through the gateway; these run in a second, so `make mutate` can run them for every
mutant of the module."""
import datetime

import argon2
import pytest

from carpet_common import errors
from carpet_common.calls import CallInfo, call_var
from credit_service import accounts, controls, passwords, signin
from credit_service.models import AuditLog, AuthSession, LoginFailure, RefreshToken, User

PASSWORD = "correct horse battery"
TTL = 3600
ADDRESS = "203.0.113.7"


@pytest.fixture(autouse=True)
def call():
    """The audit rows name the call's request id, as a real RPC's would."""
    token = call_var.set(CallInfo(method="/carpet.credit.v1.AuthService/Login",
                                  client_ip=ADDRESS, request_id="req-1", metadata={}))
    yield
    call_var.reset(token)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    """Argon2 at its lowest cost: these tests are about the rules around the hash (the
    end-to-end tests keep the real cost)."""
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", hasher)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", hasher.hash("no user has this password"))


@pytest.fixture
def person(credit_db, clock):
    shop = accounts.create_organization("Shop", 0, actor="test", now=clock()).id
    return accounts.create_user(shop, "Ayşe", "Ayse@Example.com", "STAFF", now=clock(),
                                password=PASSWORD)


def login(clock, password=PASSWORD, email="ayse@example.com", address=ADDRESS):
    return signin.login(email, password, address, clock(), refresh_ttl_s=TTL, request_id="req-1")


def audited():
    return [(row.action.rsplit("/", 1)[1], row.outcome, row.actor, row.peer, row.target)
            for row in AuditLog.select().order_by(AuditLog.id)]


def failures():
    return sorted(row.key for row in LoginFailure.select())


def test_a_sign_in_opens_a_session_with_one_refresh_token(person, clock):
    signed_in = login(clock, email=" AYSE@example.com ")
    assert (signed_in.user.id, signed_in.user.email) == (person.id, "ayse@example.com")
    session = AuthSession.get_by_id(signed_in.session_id)
    assert (session.user_id, session.created_at, session.ended_at) == (person.id, clock(), None)
    (token,) = RefreshToken.select()
    assert token.token_hash == signin._digest(signed_in.refresh_token) != \
        signed_in.refresh_token
    assert token.expires_at == clock() + datetime.timedelta(seconds=TTL)
    assert failures() == []  # the attempt's own rows are gone
    assert audited() == [("Login", "ok", "ayse@example.com", ADDRESS, f"user:{person.id}")]
    assert AuditLog.get().request_id == "req-1"


def test_the_sixth_attempt_is_refused_without_checking_and_says_when_to_retry(person, clock):
    for _ in range(signin.FAILURE_LIMIT):
        with pytest.raises(errors.Unauthenticated) as wrong:
            login(clock, "wrong password here")
        assert str(wrong.value) == signin.WRONG_CREDENTIALS
        clock.advance(60)
    with pytest.raises(errors.ResourceExhausted) as locked:
        login(clock)  # the right password, but locked
    # The first failure was 5 minutes ago: it leaves the 15-minute window in 10 minutes.
    assert (locked.value.reason, locked.value.retry_after_s) == (
        "TOO_MANY_SIGN_IN_FAILURES", 600)
    with pytest.raises(errors.ResourceExhausted):
        login(clock)
    # Each failure is audited; the lockout once per window, however often it is hit.
    outcomes = [outcome for _, outcome, *_ in audited()]
    assert outcomes == ["denied:UNAUTHENTICATED"] * 5 + ["denied:RESOURCE_EXHAUSTED"]
    clock.advance(600)  # the first failure leaves the window: one more try
    assert login(clock).user.id == person.id


def test_failures_count_per_account_and_per_address(person, clock):
    for number in range(signin.FAILURE_LIMIT - 1):
        with pytest.raises(errors.Unauthenticated):
            login(clock, email=f"nobody{number}@example.com")
    assert failures() == sorted([f"account:nobody{n}@example.com" for n in range(4)]
                                + [f"ip:{ADDRESS}"] * 4)
    # Four from this address: a good sign-in clears the account's count, not the address's.
    login(clock)
    assert failures() == sorted([f"account:nobody{n}@example.com" for n in range(4)]
                                + [f"ip:{ADDRESS}"] * 4)
    with pytest.raises(errors.Unauthenticated):
        login(clock, "wrong password here")
    with pytest.raises(errors.ResourceExhausted):
        login(clock)  # the address's fifth failure locks it
    assert login(clock, address="198.51.100.1").user.id == person.id  # another address


def test_a_good_sign_in_clears_its_accounts_failures(person, clock):
    for _ in range(signin.FAILURE_LIMIT - 1):
        with pytest.raises(errors.Unauthenticated):
            login(clock, "wrong password here", address="")
    login(clock, address="")
    assert failures() == []
    for _ in range(signin.FAILURE_LIMIT - 1):
        with pytest.raises(errors.Unauthenticated):
            login(clock, "wrong password here", address="")
    assert login(clock, address="").user.id == person.id


def test_failures_age_out_of_the_window_and_are_forgotten(person, clock):
    for _ in range(signin.FAILURE_LIMIT - 1):
        with pytest.raises(errors.Unauthenticated):
            login(clock, "wrong password here")
    clock.advance(15 * 60)  # exactly the window: no longer counted
    with pytest.raises(errors.Unauthenticated):
        login(clock, "wrong password here")
    assert login(clock, email="ayse@example.com").user.id == person.id
    signin.forget_old(clock())
    assert failures() == [f"ip:{ADDRESS}"]  # the latest failure, inside the window, stays
    clock.advance(1)
    assert len(failures()) == 1


def test_unknown_addresses_deactivated_and_suspended_people(person, clock):
    with pytest.raises(errors.Unauthenticated) as unknown:
        login(clock, email="nobody@example.com")
    assert str(unknown.value) == signin.WRONG_CREDENTIALS
    with pytest.raises(errors.Unauthenticated):
        login(clock, email="not an address")
    assert "account:not an address" in failures()
    signin.set_active(person.id, False, clock())
    with pytest.raises(errors.PermissionDenied) as deactivated:
        login(clock)
    assert deactivated.value.reason == "USER_DEACTIVATED"
    signin.set_active(person.id, True, clock())
    controls.suspend(person.organization_id, "unpaid", clock())
    with pytest.raises(errors.OrganizationSuspended):
        login(clock)
    assert [outcome for _, outcome, *_ in audited()] == [
        "denied:UNAUTHENTICATED", "denied:UNAUTHENTICATED", "denied:PERMISSION_DENIED",
        "denied:FAILED_PRECONDITION"]


def test_refresh_spends_the_token_and_a_reused_one_ends_the_session(person, clock):
    first = login(clock)
    clock.advance(10)
    second = signin.refresh(first.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    assert (second.session_id, second.user.id) == (first.session_id, person.id)
    assert second.refresh_token != first.refresh_token
    assert RefreshToken.get(RefreshToken.token_hash == signin._digest(
        first.refresh_token)).spent_at == clock()
    with pytest.raises(errors.Unauthenticated) as reused:
        signin.refresh(first.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    assert str(reused.value) == signin.BAD_REFRESH_TOKEN
    session = AuthSession.get_by_id(first.session_id)
    assert (session.ended_at, session.end_reason) == (clock(), "refresh token reused")
    with pytest.raises(errors.Unauthenticated):  # the session's newest token is dead too
        signin.refresh(second.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    assert audited()[-1][:2] == ("Refresh", "denied:UNAUTHENTICATED")
    assert signin.revoked_session_ids(clock()) == [first.session_id]
    clock.advance(24 * 60 * 60 - 1)
    assert signin.revoked_session_ids(clock()) == [first.session_id]
    clock.advance(1)  # every access token of it has expired by now
    assert signin.revoked_session_ids(clock()) == []


def test_a_refresh_token_expires_and_is_forgotten_a_day_later(person, clock):
    signed_in = login(clock)
    clock.advance(1)
    login(clock)  # a second token, expiring a second later
    clock.advance(TTL - 1)
    with pytest.raises(errors.Unauthenticated):
        signin.refresh(signed_in.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    for token in ("", "not-a-token"):
        with pytest.raises(errors.Unauthenticated):
            signin.refresh(token, ADDRESS, clock(), refresh_ttl_s=TTL)
    clock.advance(24 * 60 * 60 - 1)
    signin.forget_old(clock())
    assert RefreshToken.select().count() == 2  # the first is a second short of a day past
    clock.advance(2)  # now the first is a second beyond, the second exactly a day past
    signin.forget_old(clock())
    assert RefreshToken.select().count() == 0


def test_refresh_stops_for_deactivated_and_suspended_people(person, clock):
    signed_in = login(clock)
    accounts_user = person.id
    signin.set_active(accounts_user, False, clock())  # also ends the session
    with pytest.raises(errors.Unauthenticated):
        signin.refresh(signed_in.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    signin.set_active(accounts_user, True, clock())
    again = login(clock)
    controls.suspend(person.organization_id, "unpaid", clock())
    with pytest.raises(errors.OrganizationSuspended):
        signin.refresh(again.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)


def test_logout_ends_only_its_session_once(person, clock):
    mine, other = login(clock), login(clock)
    signin.logout(mine.refresh_token, ADDRESS, clock())
    signin.logout(mine.refresh_token, ADDRESS, clock())  # again: nothing more
    assert [(row.id, row.end_reason) for row in AuthSession.select().order_by(AuthSession.id)
            if row.ended_at] == [(mine.session_id, "logout")]
    assert [action for action, *_ in audited()].count("Logout") == 1
    with pytest.raises(errors.Unauthenticated):
        signin.logout("", ADDRESS, clock())
    assert signin.refresh(other.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL).session_id \
        == other.session_id


def test_changing_the_password_ends_the_other_sessions(person, clock):
    mine, other = login(clock), login(clock)
    attempt = signin.start_password_check(person.id, ADDRESS, clock())
    assert len(attempt) == 2 and len(failures()) == 2
    with pytest.raises(errors.PermissionDenied) as wrong:
        signin.change_password(person.id, mine.session_id, "wrong password here",
                               "a brand new passphrase", attempt, clock())
    assert wrong.value.reason == "WRONG_PASSWORD"
    attempt = signin.start_password_check(person.id, ADDRESS, clock())
    ended = signin.change_password(person.id, mine.session_id, PASSWORD,
                                   "a brand new passphrase", attempt, clock())
    assert ended == 1 and len(failures()) == 2  # the wrong try still counts
    assert AuthSession.get_by_id(other.session_id).end_reason == "password changed"
    assert AuthSession.get_by_id(mine.session_id).ended_at is None
    assert login(clock, "a brand new passphrase").user.id == person.id
    with pytest.raises(errors.PermissionDenied):
        signin.start_password_check(None, ADDRESS, clock())


def test_password_checks_count_toward_the_lockout(person, clock):
    for _ in range(signin.FAILURE_LIMIT):
        signin.start_password_check(person.id, ADDRESS, clock())
    with pytest.raises(errors.ResourceExhausted):
        signin.start_password_check(person.id, ADDRESS, clock())
    with pytest.raises(errors.ResourceExhausted):
        login(clock)
    # One lockout of these keys, audited once (by the first refusal: the password check's).
    assert [(action, outcome) for action, outcome, *_ in audited()] == [
        ("ChangePassword", "denied:RESOURCE_EXHAUSTED")]


def test_an_admin_sets_a_password_and_every_session_ends(person, clock):
    login(clock), login(clock)
    row = signin.set_password(person.id, "set by the admin now", clock())
    assert row.id == person.id
    assert {row.end_reason for row in AuthSession.select()} == {"password set by an admin"}
    with pytest.raises(errors.NotFound):
        signin.set_password(person.id + 1, "set by the admin now", clock())
    with pytest.raises(errors.NotFound):
        signin.set_active(person.id + 1, False, clock())
    with pytest.raises(errors.Unauthenticated):
        login(clock)
    assert login(clock, "set by the admin now").user.id == person.id


def test_an_identity_providers_sign_in(person, clock):
    signed_in = signin.login_as("AYSE@example.com", ADDRESS, clock(), refresh_ttl_s=TTL,
                                provider="idp")
    assert signed_in.user.id == person.id
    for email, error in (("nobody@example.com", errors.Unauthenticated),
                         ("no address", errors.Unauthenticated)):
        with pytest.raises(error):
            signin.login_as(email, ADDRESS, clock(), refresh_ttl_s=TTL, provider="idp")
    signin.set_active(person.id, False, clock())
    with pytest.raises(errors.PermissionDenied):
        signin.login_as("ayse@example.com", ADDRESS, clock(), refresh_ttl_s=TTL,
                        provider="idp")


def test_an_old_hash_is_replaced_at_the_next_sign_in(person, clock):
    old = argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash(PASSWORD)
    User.update(password_hash=old).where(User.id == person.id).execute()
    login(clock)
    new = User.get_by_id(person.id).password_hash
    assert new != old and not passwords.needs_rehash(new)
    assert login(clock).user.id == person.id


@pytest.fixture
def colleague(person, clock):
    """A second person of the same shop, created after the first (a larger id)."""
    return accounts.create_user(person.organization_id, "Zeynep", "zeynep@example.com", "STAFF",
                                now=clock(), password="zeynep's own passphrase")


def sessions_of(user):
    return {row.id: row.end_reason for row in AuthSession.select()
            .where(AuthSession.user == user.id)}


def test_session_changes_touch_only_their_person(person, colleague, clock):
    theirs = login(clock, "zeynep's own passphrase", "zeynep@example.com")
    mine = login(clock)
    others = [login(clock).session_id for _ in range(8)]  # random ids on both sides of mine's
    attempt = signin.start_password_check(person.id, ADDRESS, clock())
    assert signin.change_password(person.id, mine.session_id, PASSWORD,
                                  "a brand new passphrase", attempt, clock()) == 8
    assert sessions_of(person) == {mine.session_id: "", **dict.fromkeys(others,
                                                                        "password changed")}
    assert sessions_of(colleague) == {theirs.session_id: ""}
    signin.set_password(person.id, "set by the admin now", clock())
    assert sessions_of(colleague) == {theirs.session_id: ""}
    # Zeynep's password is hers still.
    assert login(clock, "zeynep's own passphrase", "zeynep@example.com").user.id == colleague.id
    fresh = login(clock, "set by the admin now")
    signin.set_active(person.id, False, clock())
    assert sessions_of(person)[fresh.session_id] == "deactivated"
    assert sessions_of(colleague)[theirs.session_id] == ""
    signin.set_active(person.id, True, clock())
    again = login(clock, "set by the admin now")
    signin.set_active(person.id, True, clock())  # activating again ends nothing
    assert sessions_of(person)[again.session_id] == ""


def test_an_unknown_address_never_signs_in_as_someone_else(person, clock):
    for email in ("aaa@example.com", "zzz@example.com"):  # before and after ayse@
        with pytest.raises(errors.Unauthenticated):
            login(clock, email=email)


def test_a_made_up_refresh_token_matches_no_session(person, clock):
    signed_in = login(clock)
    assert len(signed_in.refresh_token) == 43  # 32 random bytes, URL-safe base64
    for number in range(8):  # hashes on both sides of the real token's
        with pytest.raises(errors.Unauthenticated):
            signin.refresh(f"made-up-{number}", ADDRESS, clock(), refresh_ttl_s=TTL)
        with pytest.raises(errors.Unauthenticated):
            signin.logout(f"made-up-{number}", ADDRESS, clock())
    assert AuthSession.get_by_id(signed_in.session_id).ended_at is None


def test_a_spent_token_keeps_the_time_it_was_spent(person, clock):
    first = login(clock)
    spent_at = clock()
    second = signin.refresh(first.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    clock.advance(60)
    signin.refresh(second.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    assert RefreshToken.get(RefreshToken.token_hash == signin._digest(
        first.refresh_token)).spent_at == spent_at


def test_other_accounts_and_old_failures_do_not_count(person, clock):
    for _ in range(signin.FAILURE_LIMIT):
        with pytest.raises(errors.Unauthenticated):
            login(clock, email="aaa@example.com", address="198.51.100.9")
    clock.advance(20 * 60)  # aged out: neither these nor their lockout count now
    with pytest.raises(errors.Unauthenticated):
        login(clock, "wrong password here")
    login(clock)  # clears this account's failures only
    assert failures() == sorted(["account:aaa@example.com"] * 5 + ["ip:198.51.100.9"] * 5
                                + [f"ip:{ADDRESS}"])
    signin.forget_old(clock())  # older than the window: gone
    assert failures() == [f"ip:{ADDRESS}"]


def test_each_lockout_is_audited_once_per_window(person, clock):
    def lock(email):
        for _ in range(signin.FAILURE_LIMIT):
            with pytest.raises(errors.Unauthenticated):
                login(clock, "wrong password here", email, address="")
        with pytest.raises(errors.ResourceExhausted):
            login(clock, email=email, address="")

    lock("ayse@example.com")
    clock.advance(15 * 60)  # the first lockout's failures and mark leave the window exactly
    lock("ayse@example.com")
    clock.advance(20 * 60)
    lock("zzz@example.com")  # another account after the first's mark is old
    clock.advance(20 * 60)
    lock("ayse@example.com")  # the first account again, its marks long past the window
    refusals = [actor for _, outcome, actor, *_ in audited()
                if outcome == "denied:RESOURCE_EXHAUSTED"]
    assert refusals == ["ayse@example.com", "ayse@example.com", "zzz@example.com",
                        "ayse@example.com"]


def test_retry_after_is_at_least_a_second(person, clock):
    for _ in range(signin.FAILURE_LIMIT):
        with pytest.raises(errors.Unauthenticated):
            login(clock, "wrong password here")
    clock.now += datetime.timedelta(minutes=15) - datetime.timedelta(milliseconds=500)
    with pytest.raises(errors.ResourceExhausted) as locked:
        login(clock)
    assert locked.value.retry_after_s == 1


def test_the_audit_row_of_a_sign_in_names_its_session(person, clock):
    import json

    signed_in = login(clock)
    (row,) = AuditLog.select()
    assert json.loads(row.details) == {"session": signed_in.session_id}


def test_each_person_changes_and_is_given_their_own_password(person, colleague, clock):
    attempt = signin.start_password_check(colleague.id, ADDRESS, clock())
    signin.change_password(colleague.id, "", "zeynep's own passphrase", "zeynep's next phrase",
                           attempt, clock())
    assert login(clock, "zeynep's next phrase", "zeynep@example.com").user.id == colleague.id
    assert login(clock).user.id == person.id  # Ayşe's is untouched
    with pytest.raises(errors.InvalidArgument):  # checked against her own address
        signin.set_password(colleague.id, "zeynep@example.com", clock())


def test_a_refresh_token_past_its_expiry_is_refused(person, clock):
    signed_in = login(clock)
    assert len(signed_in.session_id) == 32  # 16 random bytes, hex
    clock.advance(TTL + 1)
    with pytest.raises(errors.Unauthenticated):
        signin.refresh(signed_in.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)


def test_ended_sessions_are_listed_for_a_day_only(person, clock):
    signed_in = login(clock)
    signin.logout(signed_in.refresh_token, ADDRESS, clock())
    clock.advance(24 * 60 * 60 + 1)
    assert signin.revoked_session_ids(clock()) == []


def test_a_long_non_address_counts_under_its_first_320_characters(person, clock):
    typed = "x" * 400
    with pytest.raises(errors.Unauthenticated):
        login(clock, email=typed)
    assert f"account:{'x' * 320}" in failures()


def test_ending_one_session_ends_no_other(person, colleague, clock):
    import json

    theirs = login(clock, "zeynep's own passphrase", "zeynep@example.com")
    signin.logout(theirs.refresh_token, ADDRESS, clock())  # already ended, as a logout
    first = login(clock)
    others = [login(clock).session_id for _ in range(8)]  # ids on both sides of first's
    signin.refresh(first.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    with pytest.raises(errors.Unauthenticated):  # reused: that session ends, no other
        signin.refresh(first.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    assert sessions_of(person) == {first.session_id: "refresh token reused",
                                   **dict.fromkeys(others, "")}
    last = login(clock)
    signin.logout(last.refresh_token, ADDRESS, clock())
    assert [action for action, *_ in audited()].count("Logout") == 2  # theirs, and this one
    assert sessions_of(person)[last.session_id] == "logout"
    assert all(sessions_of(person)[session_id] == "" for session_id in others)
    signin.set_password(person.id, "set by the admin now", clock())
    assert sessions_of(colleague) == {theirs.session_id: "logout"}  # not ended again
    signin.set_active(person.id, False, clock())
    assert login(clock, "zeynep's own passphrase", "zeynep@example.com").user.id == colleague.id
    via = signin.login_as("zeynep@example.com", ADDRESS, clock(), refresh_ttl_s=TTL,
                          provider="idp")
    (row,) = AuditLog.select().where(AuditLog.details.contains('"provider"'))
    assert row.details == json.dumps({"provider": "idp", "session": via.session_id},
                                     sort_keys=True)


def test_old_hashes_are_replaced_for_their_own_person_only(person, colleague, clock):
    old = argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    for user, password in ((person, PASSWORD), (colleague, "zeynep's own passphrase")):
        User.update(password_hash=old.hash(password)).where(User.id == user.id).execute()
    login(clock)
    login(clock, "zeynep's own passphrase", "zeynep@example.com")
    assert login(clock).user.id == person.id
    assert login(clock, "zeynep's own passphrase", "zeynep@example.com").user.id == colleague.id


def test_an_identity_provider_names_exactly_one_person(person, clock):
    with pytest.raises(errors.Unauthenticated):  # "aaa@" sorts before ayse@
        signin.login_as("aaa@example.com", ADDRESS, clock(), refresh_ttl_s=TTL, provider="idp")


def test_a_password_change_needs_a_current_person(person, clock):
    with pytest.raises(errors.Unauthenticated):
        signin.start_password_check(person.id + 100, ADDRESS, clock())
    signin.set_active(person.id, False, clock())
    with pytest.raises(errors.Unauthenticated):
        signin.start_password_check(person.id, ADDRESS, clock())


def test_a_logout_is_audited_when_it_ends_the_session(person, clock):
    signed_in = login(clock)
    signin.logout(signed_in.refresh_token, ADDRESS, clock())
    assert [action for action, *_ in audited()] == ["Login", "Logout"]


def test_refreshing_one_session_leaves_older_ones_alone(person, colleague, clock):
    older = login(clock)
    newer = login(clock, "zeynep's own passphrase", "zeynep@example.com")
    signin.refresh(newer.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL)
    assert signin.refresh(older.refresh_token, ADDRESS, clock(), refresh_ttl_s=TTL).user.id \
        == person.id  # its token was not spent by the other refresh


def test_admin_changes_to_the_second_person_leave_the_first_alone(person, colleague, clock):
    mine = login(clock)
    signin.set_password(colleague.id, "set for zeynep now", clock())
    signin.set_active(colleague.id, False, clock())
    assert sessions_of(person) == {mine.session_id: ""}
    assert login(clock).user.id == person.id  # Ayşe's password is hers still


def test_the_second_persons_password_change_leaves_the_first_signed_in(person, colleague,
                                                                       clock):
    mine = login(clock)
    attempt = signin.start_password_check(colleague.id, ADDRESS, clock())
    signin.change_password(colleague.id, "", "zeynep's own passphrase", "zeynep's next phrase",
                           attempt, clock())
    assert sessions_of(person) == {mine.session_id: ""}
