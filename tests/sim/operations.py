"""What the scheduler can do in a step: the logical clients' calls and the background work,
each the real domain code. An operation draws its parameters from the step's own random
source and picks what it acts on from the state at that moment, so a step means something
whatever ran before it (which is what lets a failing run be shrunk by dropping steps).

Clients: a shop's backend submitting renders (and retrying with the same idempotency key when
its answer was lost), an admin adjusting and granting credits (the same), a backend holding
credits directly (reserve, capture, release by reference), an admin cancelling renders and
changing spend limits and suspensions, people signing in and refreshing.
Background: render workers claiming and working on jobs, the hold settler, the hold sweeper,
grant expiry, the render-event and render-audit relays, webhook delivery.
"""
from __future__ import annotations

import datetime

from carpet_common import errors
from carpet_common.calls import Who
from carpet_common.convert import timestamp
from credit_service import controls, grants, ledger
from credit_service.webhooks import outbox
from protos.carpet.credit.v1 import account_pb2, credit_pb2
from render_service import audit_outbox, events, jobs, renders
from render_service.models import Carpet, RenderJob
from render_service.settler import HoldSettler

from .world import ORGANIZATIONS, SETTINGS, SHOP_BACKEND, USERS_PER_ORGANIZATION, World

LEASE = datetime.timedelta(seconds=SETTINGS.render_lease_seconds)
WORKERS = ("render-1:0", "render-1:1", "render-2:0")
ADMIN = Who(actor="sim-admin@example.com", role="ADMIN")
WEBHOOK_SCHEDULE = (5, 30, 120)


class Clients:
    """What the logical clients remember between steps (they run outside the simulated
    processes, so no crash takes it)."""

    def __init__(self):
        self.next_key = 0
        self.unanswered_submissions: list[dict] = []
        self.answered_submissions: list[dict] = []
        self.unanswered_changes: list[tuple[str, object]] = []
        self.direct_holds: list[dict] = []
        self.refresh_tokens: list[str] = []
        self.spent_tokens: list[str] = []
        self.organizations: list[int] = []  # made during the run
        self.unanswered_organization = None

    def key(self, prefix: str) -> str:
        self.next_key += 1
        return f"{prefix}-{self.next_key}"


def _organization(world: World, rng) -> int:
    """One of the seeded organisations mostly, now and then one made during the run."""
    made = world.clients.organizations
    if made and rng.random() < 0.15:
        return rng.choice(made)
    return rng.choices(range(1, len(ORGANIZATIONS) + 1), weights=(5, 4, 1))[0]


def _user(rng, organization_id: int) -> int | None:
    """One of its users, none, or now and then another organisation's (refused)."""
    draw = rng.random()
    if draw < 0.3 or organization_id > len(ORGANIZATIONS):  # one made in the run has none
        return None
    if draw < 0.33:
        organization_id = organization_id % len(ORGANIZATIONS) + 1
    first_user = (organization_id - 1) * USERS_PER_ORGANIZATION + 1  # as the seed made them
    return first_user + rng.randrange(USERS_PER_ORGANIZATION)


# --- clients -------------------------------------------------------------------------------------

def submit(world: World, rng) -> None:
    clients = world.clients
    if clients.unanswered_submissions and rng.random() < 0.6:
        request = clients.unanswered_submissions.pop(rng.randrange(
            len(clients.unanswered_submissions)))
    elif clients.answered_submissions and rng.random() < 0.1:
        request = rng.choice(clients.answered_submissions)  # a replay of an answered one
    else:
        organization_id = _organization(world, rng)
        carpets = [row for (row,) in Carpet.select(Carpet.id).order_by(Carpet.id).tuples()]
        request = {"organization_id": organization_id, "user_id": _user(rng, organization_id),
                   "carpet_id": rng.choice(carpets), "mode": rng.choice(("preview", "standard",
                                                                         "hd")),
                   "key": clients.key("render")}
    clients.unanswered_submissions.append(request)  # until the answer arrives
    try:
        job = renders.submit_render(
            organization_id=request["organization_id"], user_id=request["user_id"],
            carpet_id=request["carpet_id"], mode=request["mode"], room_image=b"",
            idempotency_key=request["key"], fingerprint=f"{request['carpet_id']}:{request['mode']}",
            credit=world.credit, settings=SETTINGS, now=world.now())
    except errors.DomainError:
        clients.unanswered_submissions.remove(request)  # refused: the answer arrived
        return
    clients.unanswered_submissions.remove(request)
    if request not in clients.answered_submissions:
        clients.answered_submissions.append(request)
    world.model.submitted(request["organization_id"], request["key"], job.id)


def _send_change(world: World, kind: str, request) -> None:
    """An admin's adjustment or grant: retried with its key until answered."""
    clients = world.clients
    try:
        getattr(world.credit, kind)(request)  # the model compares every answer to a key's first
    except errors.Unavailable:
        clients.unanswered_changes.append((kind, request))
    except errors.DomainError:
        pass


def adjust(world: World, rng) -> None:
    clients = world.clients
    if clients.unanswered_changes and rng.random() < 0.6:
        kind, request = clients.unanswered_changes.pop(0)
        _send_change(world, kind, request)
        return
    delta = rng.choice((-12, -5, -2, -1, 1, 3, 10, 25))
    _send_change(world, "adjust", credit_pb2.AdjustCreditsRequest(
        organization_id=_organization(world, rng), delta=delta, reason="simulated adjustment",
        idempotency_key=clients.key("adjust")))


def create_organization(world: World, rng) -> None:
    """An admin makes an organisation with starting credit (retried with its key when the
    answer was lost)."""
    clients = world.clients
    request = clients.unanswered_organization or account_pb2.CreateOrganizationRequest(
        name=clients.key("Shop"), initial_credits=rng.choice((0, 5, 40)),
        idempotency_key=clients.key("organization"))
    clients.unanswered_organization = None
    try:
        answer = world.credit.create_organization(request)
    except errors.Unavailable:
        clients.unanswered_organization = request
        return
    except errors.DomainError:
        return
    if answer.id not in clients.organizations:
        clients.organizations.append(answer.id)


def grant(world: World, rng) -> None:
    now = world.now()
    effective = now + datetime.timedelta(hours=rng.choice((0, 0, 1, 30)))
    expires = effective + datetime.timedelta(hours=rng.choice((1, 6, 48, 240)))
    request = credit_pb2.GrantCreditsRequest(
        organization_id=_organization(world, rng), amount=rng.randint(1, 20),
        kind=rng.choice((credit_pb2.GRANT_KIND_PAID, credit_pb2.GRANT_KIND_PROMOTIONAL)),
        priority=rng.randint(-2, 2), reason="simulated grant",
        idempotency_key=world.clients.key("grant"))
    if effective > now:
        request.effective_at.CopyFrom(timestamp(effective))
    if rng.random() < 0.8:
        request.expires_at.CopyFrom(timestamp(expires))
    _send_change(world, "grant", request)


def reserve_direct(world: World, rng) -> None:
    clients = world.clients
    unknown = [hold for hold in clients.direct_holds if hold["id"] is None]
    if unknown and rng.random() < 0.7:
        hold = unknown[0]  # its answer was lost: the same reference again
    else:
        organization_id = _organization(world, rng)
        hold = {"organization_id": organization_id, "user_id": _user(rng, organization_id),
                "amount": rng.randint(1, 8), "reference": clients.key("direct"),
                "ttl": rng.choice((60, 600, 1800)), "id": None}
        clients.direct_holds.append(hold)
    try:
        answer = world.credit.reserve_reference(hold["organization_id"], hold["amount"],
                                                hold["reference"], hold["ttl"],
                                                hold["user_id"], SHOP_BACKEND)
    except errors.Unavailable:
        return
    except errors.DomainError:
        clients.direct_holds.remove(hold)
        return
    hold["id"] = answer.id


def resolve_direct(world: World, rng) -> None:
    """Capture or release one of the backend's holds (by reference when its id was lost)."""
    holds = world.clients.direct_holds
    if not holds:
        return
    hold = rng.choice(holds)
    try:
        if hold["id"] is None or rng.random() < 0.4:
            world.credit.release_reference(hold["organization_id"], hold["reference"])
        else:
            world.credit.capture(hold["id"])
    except errors.Unavailable:
        return
    except errors.DomainError:
        pass  # already ended: expired, or captured and not releasable
    if rng.random() < 0.7:
        holds.remove(hold)  # the backend may also come back to it (and be answered the same)


def cancel(world: World, rng) -> None:
    queued = [row for (row,) in RenderJob.select(RenderJob.id)
              .where(RenderJob.status.in_(("queued", "processing"))).order_by(RenderJob.id)
              .tuples()]
    if not queued:
        return
    job = jobs.get_job(rng.choice(queued))
    try:
        renders.cancel_render(job, who=ADMIN, credit=world.credit, now=world.now())
    except errors.DomainError:
        pass  # no longer queued


def controls_change(world: World, rng) -> None:
    organization_id = _organization(world, rng)
    draw = rng.random()
    if draw < 0.5:
        monthly = rng.choice((0, 0, 15, 40, 90))
        controls.set_spend_limits(organization_id, monthly, rng.choice((0, 0, 4, 12)))
        world.model.limits[organization_id] = monthly
    elif draw < 0.75:
        controls.suspend(organization_id, "simulated suspension", world.now())
    else:
        controls.resume(organization_id)


def sign_in(world: World, rng) -> None:
    organization_id = _organization(world, rng)
    email = f"user{rng.randrange(USERS_PER_ORGANIZATION)}@org{organization_id}.example"
    if rng.random() < 0.2:
        email = f"nobody{rng.randrange(5)}@org{organization_id}.example"  # a failure
    try:
        answer = world.credit.sign_in(email)
    except errors.DomainError:
        return
    world.clients.refresh_tokens.append(answer.refresh_token)


def refresh(world: World, rng) -> None:
    clients = world.clients
    if clients.spent_tokens and rng.random() < 0.2:
        token = rng.choice(clients.spent_tokens)  # a copy in other hands
    elif clients.refresh_tokens:
        token = clients.refresh_tokens.pop(rng.randrange(len(clients.refresh_tokens)))
    else:
        return
    try:
        answer = world.credit.refresh(token)
    except errors.Unavailable:
        return  # not presented (the crash rolled it back), or presented with the reply lost
    except errors.DomainError as refused:
        world.model.refresh_refused(token, refused)
        world.model.refresh_presented(token, answered=False)
        clients.spent_tokens.append(token)
        return
    world.model.refresh_presented(token, answered=True)
    clients.spent_tokens.append(token)
    clients.refresh_tokens.append(answer.refresh_token)


# --- background work -------------------------------------------------------------------------

def claim(world: World, rng) -> None:
    worker = rng.choice(WORKERS)
    job = jobs.claim_next(worker, world.now(), LEASE)
    if job is not None:
        world.in_hand.append((job.id, worker))


def work(world: World, rng) -> None:
    if not world.in_hand:
        return
    job_id, worker = world.in_hand.pop(rng.randrange(len(world.in_hand)))
    world.workers.work_on(jobs.get_job(job_id), worker)


def work_all(world: World, rng) -> None:
    """Every claimable job claimed and worked on at once (draining a run's end only)."""
    while (job := jobs.claim_next("drain", world.now(), LEASE)) is not None:
        world.workers.work_on(job, "drain")


def settle(world: World, rng) -> None:
    settler = HoldSettler(world.credit, world.now)
    for job in jobs.jobs_to_release():
        settler.release(job)


def sweep_holds(world: World, rng) -> None:
    ledger.expire_holds(world.now())


def expire_grants(world: World, rng) -> None:
    grants.expire_grants(world.now())


def relay(world: World, rng) -> None:
    try:
        if rng.random() < 0.5:
            events.relay_once(world.credit)
        else:
            audit_outbox.relay_once(world.credit)
    except errors.Unavailable:
        pass  # the outbox keeps them: the next round sends them again


def deliver_webhooks(world: World, rng) -> None:
    now = world.now()
    for claimed in outbox.claim_due(5, now, datetime.timedelta(seconds=30), per_endpoint=5):
        outbox.record_attempt(claimed, world.webhooks.send(claimed), WEBHOOK_SCHEDULE, now)


def clock_jump(world: World, rng) -> None:
    world.advance(datetime.timedelta(minutes=rng.choice((20, 90, 600, 2000))))


# name -> (operation, weight)
OPERATIONS = {
    "submit": (submit, 20), "adjust": (adjust, 7), "grant": (grant, 4),
    "create_organization": (create_organization, 1),
    "reserve": (reserve_direct, 6), "resolve": (resolve_direct, 6), "cancel": (cancel, 3),
    "controls": (controls_change, 2), "sign_in": (sign_in, 2), "refresh": (refresh, 3),
    "claim": (claim, 14), "work": (work, 14), "settle": (settle, 5),
    "sweep_holds": (sweep_holds, 3), "expire_grants": (expire_grants, 2), "relay": (relay, 5),
    "deliver_webhooks": (deliver_webhooks, 4), "clock_jump": (clock_jump, 1),
    "work_all": (work_all, 0),  # never drawn: the drain at a run's end runs it
}
