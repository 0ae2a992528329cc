"""The ledger's edges: each limit at its value and one past it, and every query that names an
organisation, a user or a reference run with a second one beside it, so a filter that matched
too much (or the wrong row first) gives a different answer. Written from the mutants that
survived the other ledger tests (`make mutate`, docs/testing.md)."""
import pytest

from carpet_common import errors
from credit_service import accounts, ledger
from credit_service.models import CreditHold
from credit_service.verify import verify_credit
from tests.unit.domain.test_ledger import org

DAY_S = 24 * 60 * 60


def staff(organization_id, name, clock):
    return accounts.create_user(organization_id, name, f"{name}@example.com", "STAFF",
                                now=clock()).id


def test_every_limit_at_its_value_and_one_past_it(credit_db, clock):
    acme = org(credits=0, now=clock())
    ledger.adjust_credits(acme, ledger.MAX_ADJUSTMENT, "the largest grant", actor="a",
                          now=clock())
    with pytest.raises(errors.InvalidArgument):
        ledger.adjust_credits(acme, ledger.MAX_ADJUSTMENT + 1, "one more", actor="a",
                              now=clock())
    with pytest.raises(errors.InvalidArgument):
        ledger.adjust_credits(acme, -ledger.MAX_ADJUSTMENT - 1, "one more", actor="a",
                              now=clock())
    assert ledger.MAX_RESERVATION == 10**12 and ledger.MAX_ADJUSTMENT == 10**12
    hold = ledger.reserve_credits(acme, 10**12, "r" * 200, DAY_S, user_id=None, now=clock())
    assert (hold.amount, hold.reference, hold.expires_at - clock()) == (
        10**12, "r" * 200, ledger.datetime.timedelta(seconds=DAY_S))
    for amount, reference, ttl in ((10**12 + 1, "a", 60), (1, "r" * 201, 60),
                                   (1, "b", DAY_S + 1)):
        with pytest.raises(errors.InvalidArgument):
            ledger.reserve_credits(acme, amount, reference, ttl, user_id=None, now=clock())


def test_only_credit_added_can_carry_grant_terms(credit_db, clock):
    acme = org(credits=10, now=clock())
    with pytest.raises(errors.InvalidArgument) as refused:
        ledger.adjust_credits(acme, -1, "take", actor="a", now=clock(),
                              terms=ledger.grants.GrantTerms())
    assert str(refused.value) == "only credit added can be a grant"
    assert ledger.get_balance(acme, clock()).balance == 10


def test_a_hold_names_a_user_of_its_own_organisation(credit_db, clock):
    acme, other = org("Acme", now=clock()), org("Other", now=clock())
    stranger = staff(other, "stranger", clock)  # the first user: a filter that skipped the
    clerk = staff(acme, "clerk", clock)        # named one would find this one
    hold = ledger.reserve_credits(acme, 2, "job-1", 60, user_id=clerk, now=clock())
    _, log = ledger.capture_hold(hold.id, now=clock())
    assert (hold.user_id, log.user_id) == (clerk, clerk)
    with pytest.raises(errors.UserNotFound) as refused:
        ledger.reserve_credits(other, 2, "job-2", 60, user_id=clerk, now=clock())
    assert str(refused.value) == f"user {clerk} not found in organisation {other}"
    with pytest.raises(errors.UserNotFound):
        ledger.reserve_credits(acme, 2, "job-3", 60, user_id=stranger, now=clock())
    assert ledger.get_balance(other, clock()).held == 0


def test_a_repeated_reservation_finds_its_own_hold(credit_db, clock):
    acme, other = org("Acme", now=clock()), org("Other", now=clock())
    theirs = ledger.reserve_credits(other, 1, "job-a", 60, user_id=None, now=clock())
    later = ledger.reserve_credits(acme, 1, "job-b", 60, user_id=None, now=clock())
    mine = ledger.reserve_credits(acme, 1, "job-a", 60, user_id=None, now=clock())
    again = ledger.reserve_credits(acme, 1, "job-a", 60, user_id=None, now=clock())
    assert again.id == mine.id and mine.id not in (theirs.id, later.id)
    released = ledger.release_hold_by_reference(acme, "job-a", now=clock())
    assert (released.id, released.state) == (mine.id, "released")
    assert CreditHold.get_by_id(theirs.id).state == "held"
    with pytest.raises(errors.NotFound) as missing:
        ledger.release_hold_by_reference(acme, "x" * 200, now=clock())
    assert str(missing.value) == f"no hold with reference {'x' * 80!r} in organisation {acme}"


def test_a_hold_shows_its_own_charge_and_no_other(credit_db, clock):
    acme = org(credits=10, now=clock())
    first = ledger.reserve_credits(acme, 2, "job-1", 60, user_id=None, now=clock())
    second = ledger.reserve_credits(acme, 3, "job-2", 60, user_id=None, now=clock())
    _, charge = ledger.capture_hold(second.id, now=clock())
    released = ledger.release_hold(first.id, now=clock())
    assert (released.state, released.credit_log_id) == ("released", None)
    again, same = ledger.capture_hold(second.id, now=clock())  # read back through a join
    assert (again.credit_log_id, same.id) == (charge.id, charge.id)


def test_a_reservation_expires_only_its_own_organisations_overdue_holds(credit_db, clock):
    acme, other = org("Acme", credits=3, now=clock()), org("Other", credits=5, now=clock())
    theirs = ledger.reserve_credits(acme, 3, "job-1", 10, user_id=None, now=clock())
    ledger.reserve_credits(other, 5, "job-1", 10, user_id=None, now=clock())
    clock.advance(11)
    # Other's balance row still counts its overdue hold: the reservation expires it first.
    assert ledger.reserve_credits(other, 5, "job-2", 60, user_id=None, now=clock()).amount == 5
    assert CreditHold.get_by_id(theirs.id).state == "held"  # not swept yet, not Other's
    assert (ledger.get_balance(other, clock()).held, ledger.get_balance(acme, clock()).held) \
        == (5, 0)
    assert verify_credit() == []


def test_the_sweeper_picks_only_organisations_with_overdue_held_holds(credit_db, clock):
    acme, other = org("Acme", credits=10, now=clock()), org("Other", credits=10, now=clock())
    done = ledger.reserve_credits(acme, 1, "done", 10, user_id=None, now=clock())
    ledger.release_hold(done.id, now=clock())  # overdue by sweep time, but released
    ledger.reserve_credits(acme, 1, "waiting", 600, user_id=None, now=clock())  # not due
    ledger.reserve_credits(other, 4, "overdue", 10, user_id=None, now=clock())
    clock.advance(11)
    assert ledger.expire_holds(clock(), limit=1) == 4  # Acme's holds do not take the slot
    assert ledger.get_balance(acme, clock()).held == 1


def test_the_sweeper_takes_500_organisations_a_pass(credit_db, clock):
    for number in range(501):
        ledger.reserve_credits(org(f"Shop {number}", credits=1, now=clock()), 1, "job", 10,
                               user_id=None, now=clock())
    clock.advance(11)
    assert ledger.expire_holds(clock()) == 500
    assert ledger.expire_holds(clock()) == 1


def test_credit_history_and_usage_filter_by_organisation_and_user(credit_db, clock):
    acme, other = org("Acme", credits=10, now=clock()), org("Other", credits=10, now=clock())
    first, second = staff(acme, "first", clock), staff(acme, "second", clock)
    for user, amount in ((first, 1), (second, 2)):
        hold = ledger.reserve_credits(acme, amount, f"job-{user}", 60, user_id=user,
                                      now=clock())
        ledger.capture_hold(hold.id, now=clock())
    hold = ledger.reserve_credits(other, 4, "job-other", 60, user_id=None, now=clock())
    ledger.capture_hold(hold.id, now=clock())

    def deltas(**filters):
        return sorted(row.delta for row in ledger.list_credit_logs(50, "", **filters).rows)

    assert deltas(user_id=second) == [-2]
    assert deltas(user_id=first) == [-1]
    assert deltas(organization_id=acme) == [-2, -1, 10]
    assert deltas(organization_id=other) == [-4, 10]
    today = clock().date()
    assert ledger.credit_usage(today, today, acme) == {today: (3, 10)}
    assert ledger.credit_usage(today, today, other) == {today: (4, 10)}
    assert ledger.credit_usage(today, today) == {today: (7, 20)}
