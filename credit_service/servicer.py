"""gRPC servicers of the credit service: parse the request, call one domain function, build
the response. No queries here and no protobuf below here."""
from __future__ import annotations

import datetime
import json
from collections.abc import Callable

from carpet_common.auth import mint_jwt
from carpet_common.calls import current_call, current_principal, who_calls
from carpet_common.convert import optional_time, timestamp
from carpet_common.days import day_range, each_day
from carpet_common.errors import FailedPrecondition, InvalidArgument, NotFound
from carpet_common.settings import Settings
from credit_service import accounts, audit, grants, ledger, signin
from credit_service.audited import Change, audited
from credit_service.models import AuditLog, CreditLog, Organization
from protos.carpet.credit.v1 import (
    account_pb2,
    account_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    credit_pb2,
    credit_pb2_grpc,
)

Clock = Callable[[], datetime.datetime]

ROLE_TO_PROTO = {"ADMIN": account_pb2.ROLE_ADMIN, "STAFF": account_pb2.ROLE_STAFF}
ROLE_FROM_PROTO: dict[int, str] = {value: key for key, value in ROLE_TO_PROTO.items()}
KIND_TO_PROTO = {"seed": credit_pb2.CREDIT_LOG_KIND_SEED,
                 "adjust": credit_pb2.CREDIT_LOG_KIND_ADJUST,
                 "render": credit_pb2.CREDIT_LOG_KIND_RENDER,
                 "expire": credit_pb2.CREDIT_LOG_KIND_EXPIRE}
GRANT_KIND_TO_PROTO = {"paid": credit_pb2.GRANT_KIND_PAID,
                       "promotional": credit_pb2.GRANT_KIND_PROMOTIONAL}
GRANT_KIND_FROM_PROTO = {value: key for key, value in GRANT_KIND_TO_PROTO.items()}
KIND_FROM_PROTO = {value: key for key, value in KIND_TO_PROTO.items()}
HOLD_STATE_TO_PROTO = {"held": credit_pb2.HOLD_STATE_HELD,
                       "captured": credit_pb2.HOLD_STATE_CAPTURED,
                       "released": credit_pb2.HOLD_STATE_RELEASED,
                       "expired": credit_pb2.HOLD_STATE_EXPIRED}


def _actor() -> str:
    return current_principal().actor


def _staff_scope(organization_id: int) -> int:
    """STAFF: its own organisation only (0 means its own); others as asked."""
    return current_principal().check_organization(organization_id)


def _call_origin() -> dict:
    """The call's request id and the service that relayed it (the gateway passes people's
    sign-in calls on), for the sign-in module's audit rows."""
    principal = current_principal()
    return {"request_id": current_call().request_id,
            "via": principal.actor if principal.is_service else ""}


def _visible(organization_id: int, what: str):
    """A row of another organisation does not exist for STAFF."""
    if not current_principal().sees(organization_id):
        raise NotFound(f"{what} not found")


def organization_message(row: Organization, expiring: int = 0) -> account_pb2.Organization:
    balance_row = getattr(row, "balance_row", None)
    return account_pb2.Organization(
        id=row.id, name=row.name, balance=balance_row.balance if balance_row else 0,
        held=balance_row.held if balance_row else 0, created_at=timestamp(row.created_at),
        expiring_within_30_days=expiring)


def user_message(row: accounts.UserRow) -> account_pb2.User:
    return account_pb2.User(
        id=row.id, organization_id=row.organization_id,
        organization_name=row.organization_name, name=row.name, email=row.email,
        role=ROLE_TO_PROTO[row.role], credit=row.credit,
        created_at=timestamp(row.created_at), active=bool(row.active),
        has_password=bool(row.has_password), display_email=row.display_email or row.email)


def balance_message(view: ledger.BalanceView) -> credit_pb2.Balance:
    return credit_pb2.Balance(organization_id=view.organization_id, balance=view.balance,
                              held=view.held, available=view.available)


def credit_log_message(row: CreditLog | ledger.CreditLogView) -> credit_pb2.CreditLog:
    return credit_pb2.CreditLog(
        id=row.id, organization_id=row.organization_id, user_id=row.user_id or 0,
        delta=row.delta, balance_after=row.balance_after, kind=KIND_TO_PROTO[row.kind],
        reason=row.reason, reference=row.reference, actor=row.actor,
        created_at=timestamp(row.created_at), grant_id=row.grant_id or 0,
        **_grant_terms(row))


def _grant_terms(row) -> dict:
    """The grant's kind and expiry where the row was read joined with its grant
    (ListCreditLogs); never a look-up of its own."""
    grant = getattr(row, "__rel__", {}).get("grant")
    if grant is None or grant.kind is None:
        return {}
    terms: dict[str, object] = {"grant_kind": GRANT_KIND_TO_PROTO[grant.kind]}
    if grant.expires_at is not None:
        terms["grant_expires_at"] = timestamp(grant.expires_at)
    return terms


def grant_message(organization_id: int, row: grants.GrantView) -> credit_pb2.Grant:
    return credit_pb2.Grant(
        id=row.id, organization_id=organization_id, kind=GRANT_KIND_TO_PROTO[row.kind],
        amount=row.amount, remaining=row.remaining, held=row.held, priority=row.priority,
        effective_at=timestamp(row.effective_at), expires_at=timestamp(row.expires_at),
        reason=row.reason, created_at=timestamp(row.created_at))


def hold_message(row: ledger.HoldView) -> credit_pb2.Hold:
    return credit_pb2.Hold(
        id=row.id, organization_id=row.organization_id, amount=row.amount,
        state=HOLD_STATE_TO_PROTO[row.state], reference=row.reference,
        expires_at=timestamp(row.expires_at), user_id=row.user_id or 0,
        credit_log_id=row.credit_log_id or 0, release_reason=row.release_reason)


def audit_message(row: AuditLog) -> audit_pb2.AuditLog:
    return audit_pb2.AuditLog(
        id=row.id, actor=row.actor, role=row.role, action=row.action,
        organization_id=row.organization_id or 0, target=row.target, details=row.details,
        outcome=row.outcome, peer=row.peer, request_id=row.request_id,
        created_at=timestamp(row.created_at), actor_user_id=row.actor_user_id or 0)


def _role(value: int) -> str:
    role = ROLE_FROM_PROTO.get(value)
    if role is None:
        raise InvalidArgument("role must be ROLE_ADMIN or ROLE_STAFF")
    return role


class AccountServicer(account_pb2_grpc.AccountServiceServicer):
    def __init__(self, clock: Clock):
        self._clock = clock

    def CreateOrganization(self, request, context):
        def create(change: Change):
            row = accounts.create_organization(request.name, request.initial_credits,
                                               actor=_actor(), now=self._clock())
            return change.done(organization_message(row), organization_id=row.id,
                               target=f"organization:{row.id}")

        return audited(request, create, who=who_calls(), replay=account_pb2.Organization.FromString)

    def GetOrganization(self, request, context):
        _visible(request.id, f"organisation {request.id}")
        expiring = grants.expiring_soon(self._clock(), [request.id]).get(request.id, 0)
        return organization_message(accounts.get_organization(request.id), expiring)

    def ListOrganizations(self, request, context):
        page = accounts.list_organizations(request.page_size, request.page_token)
        expiring = grants.expiring_soon(self._clock(), [row.id for row in page.rows])
        return account_pb2.ListOrganizationsResponse(
            organizations=[organization_message(row, expiring.get(row.id, 0))
                           for row in page.rows],
            next_page_token=page.next_page_token)

    def CreateUser(self, request, context):
        def create(change: Change):
            row = accounts.create_user(request.organization_id, request.name, request.email,
                                       _role(request.role), now=self._clock(),
                                       password=request.password)
            return change.done(user_message(row), target=f"user:{row.id}")

        return audited(request, create, who=who_calls(), replay=account_pb2.User.FromString,
                       organization_id=request.organization_id)

    def SetUserPassword(self, request, context):
        def set_password(change: Change):
            row = signin.set_password(request.id, request.password, self._clock())
            return change.done(user_message(row), target=f"user:{row.id}",
                               organization_id=row.organization_id)

        return audited(request, set_password, who=who_calls(), target=f"user:{request.id}")

    def DeactivateUser(self, request, context):
        return self._set_active(request, False)

    def ActivateUser(self, request, context):
        return self._set_active(request, True)

    def _set_active(self, request, active: bool):
        def set_active(change: Change):
            row = signin.set_active(request.id, active, self._clock())
            return change.done(user_message(row), target=f"user:{row.id}",
                               organization_id=row.organization_id)

        return audited(request, set_active, who=who_calls(), target=f"user:{request.id}")

    def GetUser(self, request, context):
        row = accounts.get_user(request.id)
        _visible(row.organization_id, f"user {request.id}")
        return user_message(row)

    def BatchGetUsers(self, request, context):
        rows = accounts.batch_get_users(list(request.ids))
        return account_pb2.BatchGetUsersResponse(users=[user_message(row) for row in rows])

    def ListUsers(self, request, context):
        role = "" if request.role == account_pb2.ROLE_UNSPECIFIED else _role(request.role)
        page = accounts.list_users(request.page_size, request.page_token,
                                   organization_id=_staff_scope(request.organization_id),
                                   role=role)
        return account_pb2.ListUsersResponse(users=[user_message(row) for row in page.rows],
                                             next_page_token=page.next_page_token)


    def GetAccountTotals(self, request, context):
        organization_id = _staff_scope(request.organization_id)
        organizations, users, balance, held = accounts.account_totals(organization_id)
        expiring = grants.expiring_soon(self._clock(),
                                        [organization_id] if organization_id else None)
        return account_pb2.AccountTotals(organizations=organizations, users=users,
                                         total_balance=balance, total_held=held,
                                         total_expiring_within_30_days=sum(expiring.values()))


class CreditServicer(credit_pb2_grpc.CreditServiceServicer):
    def __init__(self, clock: Clock):
        self._clock = clock

    def GetBalance(self, request, context):
        _visible(request.organization_id, f"organisation {request.organization_id}")
        now = self._clock()
        message = balance_message(ledger.get_balance(request.organization_id, now))
        live = grants.live_grants(request.organization_id)
        message.grants.extend(grant_message(request.organization_id, row) for row in live)
        message.expiring_within_30_days = grants.expiring_soon(
            now, [request.organization_id]).get(request.organization_id, 0)
        return message

    def GrantCredits(self, request, context):
        def grant(change: Change):
            if request.amount <= 0:
                raise InvalidArgument("amount must be greater than 0")
            kind = GRANT_KIND_FROM_PROTO.get(request.kind or credit_pb2.GRANT_KIND_PAID)
            if kind is None:
                raise InvalidArgument("kind must be GRANT_KIND_PAID or GRANT_KIND_PROMOTIONAL")
            terms = grants.GrantTerms(
                kind=kind, priority=request.priority,
                effective_at=optional_time(request, "effective_at"),
                expires_at=optional_time(request, "expires_at"))
            log, after = ledger.adjust_credits(
                request.organization_id, request.amount, request.reason, actor=_actor(),
                reference=request.idempotency_key, now=self._clock(), terms=terms)
            made = next(row for row in grants.live_grants(request.organization_id)
                        if row.id == log.grant_id)
            return change.done(credit_pb2.GrantCreditsResponse(
                grant=grant_message(request.organization_id, made),
                log=credit_log_message(log), balance=balance_message(after)),
                target=f"credit_grant:{log.grant_id}", credit_log_id=log.id)

        return audited(request, grant, who=who_calls(),
                       replay=credit_pb2.GrantCreditsResponse.FromString,
                       organization_id=request.organization_id,
                       target=f"organization:{request.organization_id}")

    def AdjustCredits(self, request, context):
        def adjust(change: Change):
            log, after = ledger.adjust_credits(
                request.organization_id, request.delta, request.reason, actor=_actor(),
                reference=request.idempotency_key, now=self._clock())
            return change.done(credit_pb2.AdjustCreditsResponse(
                log=credit_log_message(log), balance=balance_message(after)),
                target=f"credit_log:{log.id}", credit_log_id=log.id)

        return audited(request, adjust, who=who_calls(),
                       replay=credit_pb2.AdjustCreditsResponse.FromString,
                       organization_id=request.organization_id,
                       target=f"organization:{request.organization_id}")

    def ReserveCredits(self, request, context):
        hold = ledger.reserve_credits(request.organization_id, request.amount,
                                      request.reference, request.ttl_seconds,
                                      user_id=request.user_id or None, now=self._clock())
        return hold_message(hold)

    def CaptureHold(self, request, context):
        hold, log = ledger.capture_hold(request.hold_id, now=self._clock())
        return credit_pb2.CaptureHoldResponse(hold=hold_message(hold),
                                              log=credit_log_message(log))

    def ReleaseHold(self, request, context):
        if request.hold_id:
            hold = ledger.release_hold(request.hold_id, reason=request.reason, now=self._clock())
        elif request.organization_id and request.reference:
            hold = ledger.release_hold_by_reference(request.organization_id, request.reference,
                                                    reason=request.reason, now=self._clock())
        else:
            raise InvalidArgument("give hold_id, or organization_id and reference")
        return hold_message(hold)

    def GetCreditUsage(self, request, context):
        organization_id = _staff_scope(request.organization_id)
        start, end = day_range(request.from_date, request.to_date)
        usage = ledger.credit_usage(start, end, organization_id)
        return credit_pb2.CreditUsage(days=[
            credit_pb2.CreditDay(date=day.isoformat(), credits_spent=usage.get(day, (0, 0))[0],
                                 credits_added=usage.get(day, (0, 0))[1])
            for day in each_day(start, end)])

    def ListCreditLogs(self, request, context):
        kind = KIND_FROM_PROTO.get(request.kind, "")
        if request.kind and not kind:
            raise InvalidArgument("unknown credit-log kind")
        page = ledger.list_credit_logs(request.page_size, request.page_token,
                                       organization_id=_staff_scope(request.organization_id),
                                       kind=kind,
                                       user_id=request.user_id)
        return credit_pb2.ListCreditLogsResponse(
            logs=[credit_log_message(row) for row in page.rows],
            next_page_token=page.next_page_token)


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def RecordDenial(self, request, context):
        if not request.outcome.startswith("denied:") or not request.action:
            raise InvalidArgument("a denial needs an action and a denied:<CODE> outcome")
        details = {"error": request.message[:500],
                   "reported_by": current_principal().actor}
        if request.count > 1:
            details["count"] = request.count
        row = audit.append_audit(audit.AuditEntry(
            actor=request.actor or "anonymous", role=request.role, action=request.action,
            outcome=request.outcome[:64], details=json.dumps(details, sort_keys=True),
            peer=request.peer, request_id=request.request_id))
        return audit_message(row)

    def RecordAction(self, request, context):
        if not request.action or not request.actor:
            raise InvalidArgument("an action needs its actor and method")
        outcome = request.outcome or "ok"
        if outcome != "ok" and not outcome.startswith("error:"):
            raise InvalidArgument("outcome must be ok or error:<CODE>")
        details = {"reported_by": current_principal().actor}
        try:
            details["request"] = json.loads(request.details or "{}")
        except ValueError:
            raise InvalidArgument("details must be JSON") from None
        # The reported change is the audit row: recorded once per key, no row about this call.
        def record(change: Change):
            row = audit.append_audit(audit.AuditEntry(
                actor=request.actor, role=request.role[:16], action=request.action[:200],
                outcome=outcome[:64], organization_id=request.organization_id or None,
                target=request.target, details=json.dumps(details, sort_keys=True)[:4000],
                peer=request.peer, request_id=request.request_id,
                actor_user_id=request.actor_user_id or None))
            return change.done(audit_message(row), target=request.target)

        return audited(request, record, who=who_calls(), replay=audit_pb2.AuditLog.FromString,
                       own_row=False)

    def VerifyAuditChain(self, request, context):
        problems = audit.broken_links()
        return audit_pb2.AuditChainCheck(ok=not problems, problems=problems[:50],
                                         rows=AuditLog.select().count())

    def ListAuditLogs(self, request, context):
        page = audit.list_audit_logs(
            request.page_size, request.page_token, organization_id=request.organization_id,
            actor=request.actor, action=request.action,
            created_after=optional_time(request, "created_after"),
            created_before=optional_time(request, "created_before"))
        return audit_pb2.ListAuditLogsResponse(
            audit_logs=[audit_message(row) for row in page.rows],
            next_page_token=page.next_page_token)


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """Sign-in (credit_service.signin); access tokens are HS256 JWTs with JWT_SECRET, checked
    by every process like any other JWT."""

    def __init__(self, settings: Settings, clock: Clock, identity_provider=None):
        self._settings = settings
        self._clock = clock
        self._identity_provider = identity_provider  # credit_service.identity_provider

    def _session(self, signed_in: signin.SignedIn) -> auth_pb2.Session:
        user = signed_in.user
        access = mint_jwt(self._settings, user.email, user.role,
                          self._settings.access_token_ttl_s, user.organization_id,
                          user_id=user.id, session_id=signed_in.session_id)
        return auth_pb2.Session(access_token=access, refresh_token=signed_in.refresh_token,
                                expires_in=self._settings.access_token_ttl_s,
                                user=user_message(user))

    def _check_configured(self) -> None:
        if not self._settings.jwt_secret:
            raise FailedPrecondition("sign-in is not set up: JWT_SECRET is not set")

    def Login(self, request, context):
        self._check_configured()
        ttl = self._settings.refresh_token_ttl_s
        if request.id_token:
            if self._identity_provider is None:
                raise InvalidArgument("no identity provider is set up (JWT_JWKS_URL)")
            email = self._identity_provider.email_of(request.id_token)
            return self._session(signin.login_as(email, request.client_ip, self._clock(),
                                                 refresh_ttl_s=ttl, provider="jwks",
                                                 **_call_origin()))
        return self._session(signin.login(request.email, request.password, request.client_ip,
                                          self._clock(), refresh_ttl_s=ttl, **_call_origin()))

    def Refresh(self, request, context):
        self._check_configured()
        return self._session(signin.refresh(request.refresh_token, request.client_ip,
                                            self._clock(),
                                            refresh_ttl_s=self._settings.refresh_token_ttl_s,
                                            **_call_origin()))

    def Logout(self, request, context):
        signin.logout(request.refresh_token, request.client_ip, self._clock(), **_call_origin())
        return auth_pb2.LogoutResponse()

    def ChangePassword(self, request, context):
        principal = current_principal()
        attempt = signin.start_password_check(principal.user_id, current_call().client_ip,
                                              self._clock(), **_call_origin())

        def change_password(change: Change):
            ended = signin.change_password(principal.user_id, principal.session_id,
                                           request.current_password, request.new_password,
                                           attempt, self._clock())
            return change.done(auth_pb2.ChangePasswordResponse(sessions_ended=ended),
                               target=f"user:{principal.user_id}")

        return audited(request, change_password, who=who_calls(),
                       target=f"user:{principal.user_id or 0}")

    def ListRevokedSessions(self, request, context):
        return auth_pb2.ListRevokedSessionsResponse(
            session_ids=signin.revoked_session_ids(self._clock()))
