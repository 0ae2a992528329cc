"""Publishable keys and the public render API over real HTTP (gateway, render and credit services
on both engines): keys made, listed, changed, rotated and revoked by ADMIN and a shop's STAFF,
audited; a shop's page listing its catalogue, submitting a render, following it by Server-Sent
Events and fetching its picture; every refusal with its status and code; the caps holding
against many addresses at once; widget renders after everyone else's (`docs/widget.md`)."""
import concurrent.futures
import dataclasses
import datetime
import gzip
import json
import re
import urllib.error
import urllib.request

import grpc
import pytest

from admin_gateway.public_api import MAX_EVENT_STREAMS
from admin_gateway.surface import OPERATIONS
from protos.carpet.credit.v1 import notification_pb2
from protos.carpet.render.v1 import render_pb2
from render_service import models
from tests.builders import TOKEN, balance, call, create_carpet, create_org, staff_token, submit
from tests.fake_image_api import tiny_png
from tests.helpers import ADMIN, SERVICE_TOKEN, bearer, multipart_form, render_stubs

pytestmark = pytest.mark.usefixtures("engine")
SHOP = "https://shop.example"
KEY = re.compile(r"pk_live_[A-Za-z0-9]{32}")


@dataclasses.dataclass
class Stack:
    base: str  # the gateway's HTTP address
    render: object  # render-service stubs (a backend's identity)
    render_port: int


@pytest.fixture
def stack(credit_server, render_db, render_settings, clock):
    """The render service on the test clock, the whole gateway in front of it; the gateway
    believes X-Forwarded-For from loopback, as behind a proxy, so a test can be many visitors."""
    from admin_gateway.app import start_gateway
    from render_service.app import build_server

    running, port = build_server(render_settings, "127.0.0.1:0", clock=clock)
    settings = dataclasses.replace(render_settings, render_addr=f"127.0.0.1:{port}",
                                   service_token=SERVICE_TOKEN["admin-gateway"],
                                   trusted_proxies=("127.0.0.1/32",), rate_limit_admin="off")
    gateway = start_gateway(settings, "127.0.0.1:0", "127.0.0.1:0")
    stubs = render_stubs(port)
    yield Stack(f"http://127.0.0.1:{gateway.http.port}", stubs, port)
    gateway.stop()
    stubs.channel.close()
    stubs.anonymous.channel.close()
    running.stop(grace=1)


def make_key(stack, organization_id, headers=None, **settings):
    body = {"organizationId": organization_id, "allowedOrigins": [SHOP], **settings}
    status, key, _ = call(stack.base, "/admin/publishable-keys", method="POST",
                          headers=headers or TOKEN, body=body)
    assert status == 200, key
    return key


def public(stack, path, key, *, origin=SHOP, method="GET", form=None, visitor=None,
           raw=False):
    """(status, JSON document or bytes, headers) of a public call as a shop's page makes it."""
    headers = {"X-Publishable-Key": key} if key else {}
    if origin:
        headers["Origin"] = origin
    if visitor:
        headers["X-Forwarded-For"] = visitor
    data = None
    if form is not None:
        data, headers["Content-Type"] = multipart_form(form)
    request = urllib.request.Request(stack.base + path, data=data, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            return response.status, body if raw else json.loads(body), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), dict(error.headers)


def corners(*points):
    return json.dumps({"carpetCorners": [{"x": x, "y": y} for x, y in points]})


def submit_public(stack, key, carpet_id, **extra):
    form = {"roomImage": tiny_png(size=(64, 48)), "carpetId": carpet_id, "mode": "preview",
            "placement": corners((0.3, 0.5), (0.7, 0.5), (0.8, 0.9), (0.2, 0.9)), **extra}
    visitor = form.pop("visitor", None)
    return public(stack, "/public/v1/renders", key, method="POST", form=form, visitor=visitor)


def audit_rows(action):
    return [json.loads(row.details) | {"actor": row.actor, "outcome": row.outcome}
            for row in models.RenderAudit.select().where(
                models.RenderAudit.action == f"/carpet.render.v1.RenderService/{action}")
            .order_by(models.RenderAudit.id)]


def test_keys_are_made_shown_once_changed_and_revoked(stack, credit_server):
    shop, other = create_org(credit_server, "Shop", 10), create_org(credit_server, "Other", 10)
    staff = dict(bearer(staff_token(shop.id)))
    made = make_key(stack, 0, headers=staff, name="Main shop",
                    allowedOrigins=["HTTPS://Shop.Example:443/", "http://shop.example:8080"],
                    rendersPerDay=50, maxConcurrent=2, ratePerVisitor="30/minute")
    assert KEY.fullmatch(made["key"]) and made["last4"] == made["key"][-4:]
    assert (made["organizationId"], made["name"], made["allowedOrigins"], made["rendersPerDay"],
            made["maxConcurrent"], made["ratePerVisitor"], made["development"]) == (
        str(shop.id), "Main shop", [SHOP, "http://shop.example:8080"], 50, 2, "30/minute", False)
    # Stored hashed: the key is nowhere in the database or the audit entry.
    row = models.PublishableKey.get_by_id(int(made["id"]))
    assert made["key"] not in (row.key_hash, row.allowed_origins)
    assert audit_rows("CreatePublishableKey") == [
        {"id": int(made["id"]), "last4": made["last4"], "name": "Main shop",
         "allowed_origins": [SHOP, "http://shop.example:8080"], "development": False,
         "renders_per_day": 50, "max_concurrent": 2, "rate_per_visitor": "30/minute",
         "relayed_by": "admin-gateway", "actor": "sam", "outcome": "ok"}]

    # Listed with its last four characters only; STAFF see their own organisation's.
    status, listed, _ = call(stack.base, "/admin/publishable-keys", headers=staff)
    assert status == 200 and [(key["id"], key["last4"], key["key"]) for key in
                              listed["publishableKeys"]] == [(made["id"], made["last4"], "")]
    other_staff = dict(bearer(staff_token(other.id)))
    assert call(stack.base, "/admin/publishable-keys", headers=other_staff)[1] == {
        "publishableKeys": []}
    assert call(stack.base, f"/admin/publishable-keys?organizationId={shop.id}",
                headers=other_staff)[0] == 403
    path = f"/admin/publishable-keys/{made['id']}"
    assert call(stack.base, path, method="PATCH", headers=other_staff,
                body={"rendersPerDay": 1})[0] == 404

    # PATCH changes what its body holds; wrong settings are named.
    status, changed, _ = call(stack.base, path, method="PATCH", headers=staff,
                              body={"rendersPerDay": 80, "development": True})
    assert status == 200 and (changed["rendersPerDay"], changed["development"],
                              changed["maxConcurrent"]) == (80, True, 2)
    for body, message in (({"allowedOrigins": ["https://shop.example/path"]}, "scheme, host"),
                          ({"allowedOrigins": ["*"]}, "not like"),
                          ({"ratePerVisitor": "lots"}, "not like '20/minute'"),
                          ({"maxConcurrent": 0}, "max_concurrent must be")):
        status, refused, _ = call(stack.base, path, method="PATCH", headers=staff, body=body)
        assert (status, refused["code"]) == (400, "INVALID_ARGUMENT") and \
            message in refused["message"], refused
    status, refused, _ = call(stack.base, "/admin/publishable-keys", method="POST",
                              headers=TOKEN, body={"organizationId": shop.id})
    assert (status, refused["code"]) == (400, "INVALID_ARGUMENT")
    # Refusals are audited too: the other shop's attempt, then the wrong settings.
    assert [row["outcome"] for row in audit_rows("UpdatePublishableKey")] == [
        "error:NOT_FOUND", "ok", *["error:INVALID_ARGUMENT"] * 4]

    # Rotated: a new key, the same settings; revoked: stays listed, cannot be changed.
    status, rotated, _ = call(stack.base, path + "/rotate", method="POST", headers=staff,
                              body={"overlapSeconds": 600})
    assert status == 200 and KEY.fullmatch(rotated["key"]) and rotated["key"] != made["key"]
    assert (rotated["id"], rotated["rendersPerDay"]) == (made["id"], 80)
    status, revoked, _ = call(stack.base, path + "/revoke", method="POST", headers=TOKEN)
    assert status == 200 and revoked["revokedAt"]
    status, refused, _ = call(stack.base, path + "/revoke", method="POST", headers=TOKEN)
    assert (status, refused["code"]) == (412, "PUBLISHABLE_KEY_REVOKED")
    assert [row["outcome"] for row in audit_rows("RevokePublishableKey")] == [
        "ok", "error:FAILED_PRECONDITION"]
    assert rotated["key"] not in json.dumps(audit_rows("RotatePublishableKey"))


def test_a_shops_page_renders_a_carpet_and_follows_it(stack, credit_server, start_workers):
    shop = create_org(credit_server, "Shop", 10)
    carpet = stack.render.renders.CreateCarpet(render_pb2.CreateCarpetRequest(
        organization_id=shop.id, sku="KLM-1", name="Kilim", image=tiny_png(),
        sizes=[render_pb2.CarpetSize(width_cm=160, length_cm=230, sku="KLM-1-M"),
               render_pb2.CarpetSize(width_cm=80, length_cm=150)]), timeout=10)
    create_carpet(stack.render, sku="SHARED-1")
    key = make_key(stack, shop.id)["key"]

    # The catalogue: its own and the shared one; by SKU, the design or one of its sizes.
    status, listed, headers = public(stack, "/public/v1/carpets", key)
    assert status == 200 and sorted(c["sku"] for c in listed["carpets"]) == ["KLM-1",
                                                                              "SHARED-1"]
    assert (headers["Access-Control-Allow-Origin"], headers["Vary"]) == (SHOP, "Origin")
    assert "Access-Control-Allow-Credentials" not in headers
    status, listed, _ = public(stack, "/public/v1/carpets?sku=KLM-1-M", key)
    [found] = listed["carpets"]
    assert (found["name"], [(s["widthCm"], s["lengthCm"]) for s in found["sizes"]]) == (
        "Kilim", [(160, 230), (80, 150)])
    status, thumbnail, headers = public(stack, found["thumbnailUrl"], None, raw=True)
    assert status == 200 and thumbnail[:2] == b"\xff\xd8"

    # A render: charged once to the shop, followed by events, its picture fetched.
    small = found["sizes"][1]["id"]
    status, render, _ = submit_public(stack, key, carpet.id, carpetSizeId=small)
    assert status == 201 and render["status"] == "queued", render
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", render["id"])
    job = models.RenderJob.get(models.RenderJob.public_id == render["id"])
    assert (job.organization_id, job.user_id, job.priority, job.carpet_size_id) == (
        shop.id, None, 10, int(small))
    start_workers()
    events = urllib.request.Request(
        f"{stack.base}/public/v1/renders/{render['id']}/events?key={key}",
        headers={"Origin": SHOP})
    statuses = []
    with urllib.request.urlopen(events, timeout=30) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert stream.headers["Access-Control-Allow-Origin"] == SHOP
        for line in stream:
            if line.startswith(b"data: "):
                statuses.append(json.loads(line[6:])["status"])
    assert statuses[-1] == "success" and set(statuses) <= {"queued", "processing", "success"}
    status, done, _ = public(stack, f"/public/v1/renders/{render['id']}", key)
    assert (status, done["status"], done["imageUrl"]) == (
        200, "success", f"/public/v1/renders/{render['id']}/image")
    assert "organizationId" not in done and "holdId" not in done
    status, picture, headers = public(stack, done["imageUrl"] + f"?key={key}", None, raw=True)
    assert status == 200 and headers["Content-Type"] in ("image/png", "image/jpeg")
    assert balance(credit_server, shop.id).balance == 10 - 1

    # Another shop's key, or a render's internal id: nothing.
    other = create_org(credit_server, "Other", 10)
    other_key = make_key(stack, other.id)["key"]
    assert public(stack, f"/public/v1/renders/{render['id']}", other_key)[:2] == (
        404, {"code": "NOT_FOUND", "message": "render not found"})
    assert public(stack, f"/public/v1/renders/{job.id}", key)[0] == 404
    assert public(stack, f"/public/v1/carpets/{carpet.id}/thumbnail", other_key)[0] == 404


def test_keys_and_origins_are_checked_on_every_call(stack, credit_server, clock):
    shop = create_org(credit_server, "Shop", 10)
    made = make_key(stack, shop.id)
    key = made["key"]
    for caller_key, origin, status, code in (
            ("", SHOP, 401, "PUBLISHABLE_KEY_INVALID"),
            ("pk_live_" + "x" * 32, SHOP, 401, "PUBLISHABLE_KEY_INVALID"),
            (key, "https://evil.example", 403, "ORIGIN_NOT_ALLOWED"),
            (key, "https://shop.example:8443", 403, "ORIGIN_NOT_ALLOWED"),
            (key, "http://localhost:5173", 403, "ORIGIN_NOT_ALLOWED"),
            (key, None, 403, "ORIGIN_NOT_ALLOWED")):
        answer, document, headers = public(stack, "/public/v1/carpets", caller_key,
                                           origin=origin)
        assert (answer, document["code"]) == (status, code), (caller_key, origin)
        # The refusal names the page's origin, so the widget can read why (no data in it).
        assert headers.get("Access-Control-Allow-Origin") == origin
    # A development key also works from the developer's own machine, any port.
    development = make_key(stack, shop.id, development=True, allowedOrigins=[])["key"]
    assert public(stack, "/public/v1/carpets", development,
                  origin="http://localhost:5173")[0] == 200
    assert public(stack, "/public/v1/carpets", development,
                  origin="http://127.0.0.1:8000")[0] == 200
    assert public(stack, "/public/v1/carpets", development,
                  origin="http://localhost.evil.example:80")[0] == 403

    # Rotated: both work until the overlap ends; then only the new one.
    path = f"/admin/publishable-keys/{made['id']}"
    rotated = call(stack.base, path + "/rotate", method="POST", headers=TOKEN,
                   body={"overlapSeconds": 3600})[1]["key"]
    assert public(stack, "/public/v1/carpets", key)[0] == 200
    assert public(stack, "/public/v1/carpets", rotated)[0] == 200
    clock.advance(seconds=3601)
    assert public(stack, "/public/v1/carpets", key)[0] == 401
    assert public(stack, "/public/v1/carpets", rotated)[0] == 200
    # Revoked: refused at once.
    assert call(stack.base, path + "/revoke", method="POST", headers=TOKEN)[0] == 200
    assert public(stack, "/public/v1/carpets", rotated)[1]["code"] == "PUBLISHABLE_KEY_INVALID"


def test_the_daily_cap_holds_against_many_addresses_at_once(stack, credit_server, clock):
    shop = create_org(credit_server, "Shop", 100)
    carpet = create_carpet(stack.render)
    made = make_key(stack, shop.id, rendersPerDay=3, maxConcurrent=50,
                    ratePerVisitor="100/minute")

    def one(visitor):
        return submit_public(stack, made["key"], carpet.id, visitor=f"203.0.113.{visitor}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(1, 17)))
    assert sorted(status for status, _, _ in answers) == [201] * 3 + [429] * 13
    refused = [(document, headers) for status, document, headers in answers if status == 429]
    midnight = datetime.datetime.combine(clock().date() + datetime.timedelta(days=1),
                                         datetime.time())
    assert {document["code"] for document, _ in refused} == {"KEY_DAILY_CAP_REACHED"}
    assert {int(headers["Retry-After"]) for _, headers in refused} == {
        int((midnight - clock()).total_seconds())}
    assert models.RenderJob.select().where(
        models.RenderJob.publishable_key_id == int(made["id"])).count() == 3
    listed = call(stack.base, "/admin/publishable-keys", headers=TOKEN)[1]["publishableKeys"]
    assert [key["rendersToday"] for key in listed] == [3]
    # The next UTC day, the key renders again.
    clock.advance(days=1)
    assert one(99)[0] == 201


def test_concurrency_and_visitor_rate(stack, credit_server):
    shop = create_org(credit_server, "Shop", 100)
    carpet = create_carpet(stack.render)
    key = make_key(stack, shop.id, maxConcurrent=1, ratePerVisitor="3/minute")["key"]
    assert submit_public(stack, key, carpet.id, visitor="198.51.100.1")[0] == 201
    # The first is still queued (no workers): the key's one slot is taken.
    status, refused, headers = submit_public(stack, key, carpet.id, visitor="198.51.100.2")
    assert (status, refused["code"], headers["Retry-After"]) == (429, "RATE_LIMITED", "5")
    assert "in progress" in refused["message"]
    # One visitor's third call in a minute (the submission was its first) is its last;
    # another visitor goes on.
    for _ in range(2):
        assert public(stack, "/public/v1/carpets", key, visitor="198.51.100.1")[0] == 200
    status, refused, headers = public(stack, "/public/v1/carpets", key, visitor="198.51.100.1")
    assert (status, refused["code"]) == (429, "RATE_LIMITED") and int(headers["Retry-After"]) > 0
    assert public(stack, "/public/v1/carpets", key, visitor="198.51.100.3")[0] == 200


@pytest.mark.parametrize("case", ["too large", "not a picture", "no photo", "bad placement",
                                  "not a form", "unknown mode"])
def test_bad_uploads_are_refused_before_anything_is_stored(stack, credit_server, case):
    shop = create_org(credit_server, "Shop", 10)
    carpet = create_carpet(stack.render)
    key = make_key(stack, shop.id)["key"]
    if case == "not a form":
        status, refused, _ = public(stack, "/public/v1/renders", key, method="POST")
    else:
        extra = {"too large": {"roomImage": b"\x89PNG" + b"0" * (10 * 1024 * 1024 + 70_000)},
                 "not a picture": {"roomImage": b"%PDF-1.7 not a photo"},
                 "no photo": {"roomImage": b""},
                 "bad placement": {"placement": "{corners"},
                 "unknown mode": {"mode": "hd"}}[case]
        status, refused, _ = submit_public(stack, key, carpet.id, **extra)
    expected = {"too large": (413, "TOO_LARGE", "at most 10 MB"),
                "not a picture": (400, "INVALID_ARGUMENT", "PNG or JPEG"),
                "no photo": (400, "INVALID_ARGUMENT", "roomImage is required"),
                "bad placement": (400, "INVALID_ARGUMENT", "placement must be JSON"),
                "not a form": (400, "INVALID_ARGUMENT", "multipart/form-data"),
                "unknown mode": (400, "INVALID_ARGUMENT", "preview, standard")}[case]
    assert (status, refused["code"]) == expected[:2] and expected[2] in refused["message"], \
        refused
    assert models.RenderJob.select().count() == 0
    assert models.RenderInput.select().count() == 0
    assert balance(credit_server, shop.id).balance == 10


def test_widget_renders_wait_behind_backends_and_staff(stack, credit_server, start_workers):
    """Ten widget renders queued first, then a backend's: the one worker takes the backend's
    render next, before any of the widget's."""
    shop = create_org(credit_server, "Shop", 100)
    carpet = create_carpet(stack.render)
    key = make_key(stack, shop.id, maxConcurrent=20, ratePerVisitor="100/minute")["key"]
    for visitor in range(10):
        assert submit_public(stack, key, carpet.id, visitor=f"192.0.2.{visitor}")[0] == 201
    internal = submit(stack.render, shop.id, carpet.id)
    start_workers(render_workers=1)
    wait = stack.render.renders.WatchRender
    for _ in wait(render_pb2.WatchRenderRequest(id=internal.id), timeout=30):
        pass
    jobs = list(models.RenderJob.select().order_by(models.RenderJob.started_at,
                                                   models.RenderJob.id))
    started = [job for job in jobs if job.started_at is not None]
    assert started[0].id == internal.id
    assert all(job.priority == 10 for job in jobs if job.id != internal.id)


def test_a_publishable_key_opens_nothing_else(stack, credit_server):
    """Every admin route of the gateway, and every method of the render service, refuses a
    publishable key presented as any credential; the public methods refuse every caller but
    the gateway."""
    shop = create_org(credit_server, "Shop", 10)
    key = make_key(stack, shop.id)["key"]
    for operation in OPERATIONS:
        if operation.http is None or operation.rule.public:
            continue
        method, path = operation.http.verb, operation.http.template
        concrete = path.replace("{id}", "1")
        for headers in ({"X-Publishable-Key": key, "Origin": SHOP},
                        {"Authorization": f"Bearer {key}"}, {"x-admin-token": key}):
            status, refused, _ = call(stack.base, concrete, method=method, headers=headers,
                                      body={} if method != "GET" else None)
            assert (status, refused["code"]) == (401, "UNAUTHENTICATED"), (method, path)
    channel = grpc.insecure_channel(f"127.0.0.1:{stack.render_port}")
    stub = render_pb2.DESCRIPTOR.services_by_name["RenderService"]
    try:
        for method in stub.methods:
            call_path = f"/carpet.render.v1.RenderService/{method.name}"
            streaming = method.server_streaming
            invoke = (channel.unary_stream if streaming else channel.unary_unary)(
                call_path, request_serializer=lambda message: b"",
                response_deserializer=lambda data: data)
            for metadata in ((("x-service-token", key),), (("authorization", f"Bearer {key}"),),
                             (("x-admin-token", key),)):
                with pytest.raises(grpc.RpcError) as refused:
                    answer = invoke(b"", metadata=metadata, timeout=10)
                    if streaming:
                        list(answer)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, method.name
        # A backend's own identity does not reach the public methods either.
        with pytest.raises(grpc.RpcError) as refused:
            stack.render.renders.ListPublicCarpets(render_pb2.ListPublicCarpetsRequest(
                caller=render_pb2.PublicRequest(key=key, origin=SHOP, visitor="192.0.2.1")),
                timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # An ADMIN manages keys on the render port too: it sees their last four only.
        [listed] = stack.render.renders.ListPublishableKeys(
            render_pb2.ListPublishableKeysRequest(), metadata=ADMIN, timeout=10).publishable_keys
        assert (listed.last4, listed.key) == (key[-4:], "")
    finally:
        channel.close()


def test_the_script_is_small_cached_and_versioned(stack):
    """One file under 30 kB gzipped, cached a day with an ETag (304 when unchanged), served to
    any page (no key, no origin needed to load it), the major version in its path."""
    request = urllib.request.Request(stack.base + "/widget/v1/widget.js")
    with urllib.request.urlopen(request, timeout=10) as response:
        script = response.read()
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert response.headers["Cache-Control"] == "public, max-age=86400"
        assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        etag = response.headers["ETag"]
    assert len(gzip.compress(script, 9)) < 30 * 1024
    assert b"eval(" not in script and b"new Function" not in script
    with pytest.raises(urllib.error.HTTPError) as unchanged:
        urllib.request.urlopen(urllib.request.Request(
            stack.base + "/widget/v1/widget.js", headers={"If-None-Match": etag}), timeout=10)
    assert unchanged.value.code == 304
    assert call(stack.base, "/widget/v2/widget.js")[0] == 404


def test_widget_renders_count_against_suspension_and_spend_limits(stack, credit_server):
    shop = create_org(credit_server, "Shop", 10)
    carpet = create_carpet(stack.render)
    key = make_key(stack, shop.id)["key"]
    credit_server.notifications.SuspendOrganization(notification_pb2.SuspendOrganizationRequest(
        id=shop.id, reason="unpaid invoice"), metadata=ADMIN, timeout=10)
    status, refused, _ = submit_public(stack, key, carpet.id)
    assert (status, refused["code"]) == (412, "ORGANIZATION_SUSPENDED")
    credit_server.notifications.ResumeOrganization(notification_pb2.ResumeOrganizationRequest(
        id=shop.id), metadata=ADMIN, timeout=10)
    poor = create_org(credit_server, "Poor", 0)
    poor_key = make_key(stack, poor.id)["key"]
    status, refused, _ = submit_public(stack, poor_key, carpet.id)
    assert (status, refused["code"]) == (412, "INSUFFICIENT_CREDITS")
    # Kept as a failed job of the shop, like any refused render; nothing charged.
    assert [(job.organization_id, job.status) for job in models.RenderJob.select()
            .order_by(models.RenderJob.id)] == [(shop.id, "failed"), (poor.id, "failed")]
    assert balance(credit_server, shop.id).balance == 10
    # A monthly spend limit of 1 credit: one preview is held, the next is refused.
    credit_server.notifications.SetSpendLimits(notification_pb2.SetSpendLimitsRequest(
        id=shop.id, monthly_credits=1), metadata=ADMIN, timeout=10)
    assert submit_public(stack, key, carpet.id)[0] == 201
    status, refused, _ = submit_public(stack, key, carpet.id)
    assert (status, refused["code"]) == (412, "SPEND_LIMIT_REACHED")
    assert balance(credit_server, shop.id).held == 1


def test_event_streams_are_bounded_and_the_page_polls_instead(stack, credit_server):
    shop = create_org(credit_server, "Shop", 100)
    carpet = create_carpet(stack.render)
    key = make_key(stack, shop.id, maxConcurrent=20, ratePerVisitor="1000/minute")["key"]
    renders = [submit_public(stack, key, carpet.id)[1]["id"] for _ in range(MAX_EVENT_STREAMS + 1)]
    streams = []
    try:
        for render in renders[:MAX_EVENT_STREAMS]:  # no workers: each waits on a queued render
            stream = urllib.request.urlopen(urllib.request.Request(
                f"{stack.base}/public/v1/renders/{render}/events?key={key}",
                headers={"Origin": SHOP}), timeout=30)
            assert stream.readline() == b"retry: 2000\n"
            streams.append(stream)
        status, refused, headers = public(stack, f"/public/v1/renders/{renders[-1]}/events", key)
        assert (status, refused["code"], headers["Retry-After"]) == (503, "UNAVAILABLE", "2")
        assert public(stack, f"/public/v1/renders/{renders[-1]}", key)[1]["status"] == "queued"
    finally:
        for stream in streams:
            stream.close()


def test_a_page_places_carpets_by_real_size_on_a_measured_floor(stack, credit_server):
    from tests.unit.test_measured_floor import MEASURE

    shop = create_org(credit_server, "Shop", 10)
    carpet = stack.render.renders.CreateCarpet(render_pb2.CreateCarpetRequest(
        organization_id=shop.id, sku="KLM-1", name="Kilim", image=tiny_png(),
        sizes=[render_pb2.CarpetSize(width_cm=100, length_cm=150),
               render_pb2.CarpetSize(width_cm=80, length_cm=150)]), timeout=10)
    key = make_key(stack, shop.id)["key"]
    measure = json.dumps({"rectangle": [{"x": x, "y": y} for x, y in MEASURE.rectangle],
                          "widthCm": 200, "lengthCm": 300})
    carpets = json.dumps([
        {"carpetSizeId": str(carpet.sizes[0].id), "centerXCm": 100, "centerYCm": 150},
        {"carpetSizeId": str(carpet.sizes[1].id), "centerXCm": 125, "centerYCm": 265,
         "rotationDeg": 90}])
    status, render, _ = submit_public(stack, key, carpet.id, placement="", floor=measure,
                                      carpets=carpets)
    assert status == 201, render
    assert [(placed["carpetSizeId"], placed["fit"]["insideFloor"])
            for placed in render["placedCarpets"]] == [
        (str(carpet.sizes[0].id), True), (str(carpet.sizes[1].id), False)]
    assert balance(credit_server, shop.id).held == 1 + 1  # preview and one extra carpet
    status, refused, _ = submit_public(stack, key, carpet.id, placement="", floor="{",
                                       carpets=carpets)
    assert (status, refused["code"]) == (400, "INVALID_ARGUMENT")
    assert refused["message"].startswith("floor must be JSON like")
