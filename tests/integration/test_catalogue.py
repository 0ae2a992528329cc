"""Catalogues per organisation, through real servers on both engines: each shop its own SKUs,
the shared catalogue every shop sees, sizes as variants, archiving, and an audit entry for
every change (`docs/catalogue.md`)."""
import json

import grpc
import pytest
from google.protobuf import field_mask_pb2

from protos.carpet.render.v1 import render_pb2
from render_service import models
from tests.builders import balance, create_org, expect_error, staff_token, submit, wait_final
from tests.fake_image_api import tiny_png
from tests.helpers import ADMIN, bearer

pytestmark = pytest.mark.usefixtures("engine")
NOT_FOUND, DENIED = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED
INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION


def size(width, length, sku="", size_id=0):
    return render_pb2.CarpetSize(id=size_id, width_cm=width, length_cm=length, sku=sku)


class Caller:
    """RenderService calls as one person (a bearer token) or as the backend `web`."""

    def __init__(self, render_server, metadata=None):
        self.renders = render_server.anonymous.renders if metadata else render_server.renders
        self.metadata = metadata

    def __call__(self, method, request):
        return getattr(self.renders, method)(request, metadata=self.metadata, timeout=10)

    def create(self, sku, sizes=None, **fields):
        return self("CreateCarpet", render_pb2.CreateCarpetRequest(
            sku=sku, name=fields.pop("name", sku), image=tiny_png(),
            sizes=sizes or [size(160, 230)], **fields))

    def listed(self, **filters):
        return [(carpet.organization_id, carpet.sku) for carpet in self(
            "ListCarpets", render_pb2.ListCarpetsRequest(**filters)).carpets]

    def update(self, carpet_id, paths, **fields):
        return self("UpdateCarpet", render_pb2.UpdateCarpetRequest(
            id=carpet_id, update_mask=field_mask_pb2.FieldMask(paths=paths), **fields))


@pytest.fixture
def shops(render_server, credit_server):
    first, second = create_org(credit_server, "First", 50), create_org(credit_server, "Second", 50)
    return (first, second, Caller(render_server, bearer(staff_token(first.id))),
            Caller(render_server, bearer(staff_token(second.id))))


def audit_entries():
    """The render service's audit entries not yet relayed (no relay runs in these tests)."""
    return [(entry.action.rsplit("/", 1)[-1], entry.outcome, entry.organization_id,
             entry.target, entry.actor)
            for entry in models.RenderAudit.select().order_by(models.RenderAudit.id)]


def test_each_shop_its_own_skus_and_the_shared_catalogue_for_all(render_server, shops):
    first, second, first_staff, second_staff = shops
    backend, admin = Caller(render_server), Caller(render_server, ADMIN)
    shared = admin.create("KLM-001")  # no organisation: the shared catalogue, as before
    mine = first_staff.create("KLM-001")  # STAFF: its own catalogue
    theirs = backend.create("KLM-001", organization_id=second.id)
    assert (shared.organization_id, mine.organization_id, theirs.organization_id) == (
        0, first.id, second.id)
    expect_error(lambda: first_staff.create("KLM-001"), grpc.StatusCode.ALREADY_EXISTS)

    assert first_staff.listed() == [(first.id, "KLM-001"), (0, "KLM-001")]
    assert second_staff.listed() == [(second.id, "KLM-001"), (0, "KLM-001")]
    assert len(admin.listed()) == 3
    assert admin.listed(organization_id=second.id) == [(second.id, "KLM-001"), (0, "KLM-001")]
    # Another shop's carpet does not exist for a shop: reading, changing, rendering.
    get = render_pb2.GetCarpetRequest
    expect_error(lambda: first_staff("GetCarpet", get(id=theirs.id)), NOT_FOUND)
    expect_error(lambda: first_staff("ArchiveCarpet",
                                     render_pb2.ArchiveCarpetRequest(id=theirs.id)), NOT_FOUND)
    expect_error(lambda: first_staff.update(theirs.id, ["name"], name="Mine now"), NOT_FOUND)
    expect_error(lambda: first_staff.create("X", organization_id=second.id), NOT_FOUND)
    # The shared catalogue is seen by every shop and changed by none.
    assert first_staff("GetCarpet", get(id=shared.id)).id == shared.id
    expect_error(lambda: first_staff.update(shared.id, ["name"], name="Ours"), DENIED)
    expect_error(lambda: first_staff("ArchiveCarpet",
                                     render_pb2.ArchiveCarpetRequest(id=shared.id)), DENIED)

    expect_error(lambda: submit(render_server, first.id, theirs.id), NOT_FOUND)
    expect_error(lambda: first_staff("SubmitRender", render_pb2.SubmitRenderRequest(
        carpet_id=theirs.id, mode="preview")), NOT_FOUND)
    assert submit(render_server, first.id, mine.id).carpet_id == mine.id
    assert submit(render_server, first.id, shared.id).carpet_id == shared.id
    # Nothing of another shop leaks into the audit entries' organisations.
    assert {(action, organization) for action, _, organization, _, _ in audit_entries()} >= {
        ("CreateCarpet", 0), ("CreateCarpet", first.id), ("CreateCarpet", second.id)}


def test_a_refused_submission_holds_no_credit(render_server, credit_server, shops):
    first, second, _, _ = shops
    theirs = Caller(render_server).create("ONLY-THEIRS", organization_id=second.id)
    expect_error(lambda: submit(render_server, first.id, theirs.id), NOT_FOUND)
    assert (balance(credit_server, first.id).held, balance(credit_server, first.id).balance) \
        == (0, 50)
    assert models.RenderJob.select().count() == 0


def test_sizes_are_variants_a_render_names(render_server, credit_server, start_workers):
    backend = Caller(render_server)
    carpet = backend.create("RUG", sizes=[size(160, 230, "RUG-160"), size(80, 150, "RUG-80"),
                                          size(200, 300)])
    assert [(s.sku, s.width_cm, s.length_cm) for s in carpet.sizes] == [
        ("RUG-160", 160, 230), ("RUG-80", 80, 150), ("", 200, 300)]
    assert (carpet.width_cm, carpet.length_cm) == (160, 230)  # the first size's
    small = carpet.sizes[1].id
    other = backend.create("OTHER")
    expect_error(lambda: backend.create("TWICE", sizes=[size(1, 1, "A"), size(2, 2, "A")]),
                 INVALID)
    # Neither sizes nor width and length: no size at all.
    expect_error(lambda: backend("CreateCarpet", render_pb2.CreateCarpetRequest(
        sku="NONE", name="n", image=tiny_png())), INVALID)
    expect_error(lambda: backend.create("BIG", sizes=[size(10_001, 100)]), INVALID)

    organization = create_org(credit_server, "Sizes", 20)
    default = submit_size(render_server, organization.id, carpet.id, 0)
    chosen = submit_size(render_server, organization.id, carpet.id, small)
    assert (default.carpet_size_id, chosen.carpet_size_id) == (carpet.sizes[0].id, small)
    expect_error(lambda: submit_size(render_server, organization.id, carpet.id,
                                     other.sizes[0].id), NOT_FOUND)
    # The worker renders the size the job names.
    seen = []

    class Recording:
        name = "recording"

        def render(self, request):
            from render_service.renderers import RenderedImage

            seen.append((request.job_id, request.carpet_width_cm, request.carpet_length_cm))
            return RenderedImage(tiny_png(), "image/png")

    start_workers(renderer=Recording())
    for job in (default, chosen):
        assert wait_final(render_server, job.id)[0].status == render_pb2.RENDER_STATUS_SUCCESS
    assert sorted(seen) == sorted([(default.id, 160, 230), (chosen.id, 80, 150)])

    # Which carpets and sizes are rendered: counted as each job is written, most rendered first.
    again = submit_size(render_server, organization.id, carpet.id, small)
    day = again.created_at.ToDatetime().date().isoformat()
    usage = render_server.renders.GetRenderUsage(render_pb2.GetRenderUsageRequest(
        organization_id=organization.id, from_date=day, to_date=day), timeout=10)
    assert [(row.carpet_id, row.carpet_size_id, row.renders) for row in usage.carpets] == [
        (carpet.id, small, 2), (carpet.id, carpet.sizes[0].id, 1)]
    from render_service.verify import count_problems

    assert list(count_problems()) == []
    models.RenderCarpetDaily.update(jobs=5).where(
        models.RenderCarpetDaily.carpet_size_id == small).execute()
    assert [problem.split(", ")[0] for problem in count_problems()] == [
        f"render carpet counts: organisation {organization.id} has 2 jobs of carpet "
        f"{carpet.id} size {small} created on {day}"]


def submit_size(render_server, organization_id, carpet_id, size_id):
    return render_server.renders.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=organization_id, carpet_id=carpet_id, carpet_size_id=size_id,
        mode="preview"), timeout=30)


def test_changes_keep_what_renders_showed(render_server, credit_server, shops):
    first, _, first_staff, _ = shops
    carpet = first_staff.create("KLM-7", sizes=[size(160, 230, "KLM-7-160"), size(80, 150)])
    old_small = carpet.sizes[1].id
    job = submit_size(render_server, first.id, carpet.id, old_small)

    changed = first_staff.update(carpet.id, ["name", "material"], name="Kilim 7",
                                 material="wool")
    assert (changed.name, changed.material, changed.sku) == ("Kilim 7", "wool", "KLM-7")
    # Keep the first size (a new SKU of its own), leave the small one out, add a large one.
    resized = first_staff.update(carpet.id, ["sizes"], sizes=[
        size(160, 230, "KLM-7-M", size_id=carpet.sizes[0].id), size(240, 340, "KLM-7-L")])
    assert [(s.id == carpet.sizes[0].id, s.sku, s.width_cm) for s in resized.sizes] == [
        (True, "KLM-7-M", 160), (False, "KLM-7-L", 240)]
    assert resized.updated_at.ToDatetime() >= carpet.updated_at.ToDatetime()
    # The job still names the size it showed; that size can no longer be rendered.
    assert render_server.renders.GetRender(render_pb2.GetRenderRequest(id=job.id),
                                           timeout=10).carpet_size_id == old_small
    expect_error(lambda: submit_size(render_server, first.id, carpet.id, old_small),
                 PRECONDITION, "CARPET_ARCHIVED")
    # A kept size's measurements never change; a mask is required and names known fields.
    expect_error(lambda: first_staff.update(carpet.id, ["sizes"], sizes=[
        size(170, 230, size_id=carpet.sizes[0].id)]), INVALID)
    expect_error(lambda: first_staff.update(carpet.id, [], name="x"), INVALID)
    expect_error(lambda: first_staff.update(carpet.id, ["sku"], name="x"), INVALID)
    expect_error(lambda: first_staff.update(carpet.id, ["name"], name=""), INVALID)
    expect_error(lambda: first_staff.update(carpet.id, ["image"], image=b"not a picture"),
                 INVALID)
    # A refused change changed nothing.
    again = first_staff("GetCarpet", render_pb2.GetCarpetRequest(id=carpet.id))
    assert (again.name, [s.sku for s in again.sizes]) == ("Kilim 7", ["KLM-7-M", "KLM-7-L"])


def test_archived_carpets_leave_listings_and_cannot_be_rendered(render_server, shops):
    first, _, first_staff, _ = shops
    carpet = first_staff.create("OLD-1", name="Old kilim")
    job = submit(render_server, first.id, carpet.id)
    archive = render_pb2.ArchiveCarpetRequest(id=carpet.id)
    archived = first_staff("ArchiveCarpet", archive)
    assert archived.HasField("archived_at")
    assert first_staff("ArchiveCarpet", archive).archived_at == archived.archived_at  # no-op
    assert first_staff.listed() == []
    assert first_staff.listed(include_archived=True) == [(first.id, "OLD-1")]
    expect_error(lambda: submit(render_server, first.id, carpet.id), PRECONDITION,
                 "CARPET_ARCHIVED")
    # Its render keeps pointing at it, and it can still be read.
    assert render_server.renders.GetRender(render_pb2.GetRenderRequest(id=job.id),
                                           timeout=10).carpet_id == carpet.id
    restored = first_staff("RestoreCarpet", render_pb2.RestoreCarpetRequest(id=carpet.id))
    assert not restored.HasField("archived_at")
    assert submit(render_server, first.id, carpet.id).carpet_id == carpet.id
    actions = [(action, outcome) for action, outcome, _, target, _ in audit_entries()
               if target == f"carpet:{carpet.id}"]
    assert actions == [("CreateCarpet", "ok"), ("ArchiveCarpet", "ok"),
                       ("RestoreCarpet", "ok")]


def test_search_by_name_or_sku_and_pages(render_server):
    backend = Caller(render_server)
    for number in range(5):
        backend.create(f"KLM-{number}", name=f"Kilim {number}", material="wool")
    backend.create("HLY-9", name="Hereke 100%", material="silk")
    assert [sku for _, sku in backend.listed(query="kilim")] == [
        "KLM-4", "KLM-3", "KLM-2", "KLM-1", "KLM-0"]
    assert [sku for _, sku in backend.listed(query="hly")] == ["HLY-9"]
    assert [sku for _, sku in backend.listed(query="100%")] == ["HLY-9"]
    assert backend.listed(query="%") == [(0, "HLY-9")]  # a literal %, not a wildcard
    assert backend.listed(query="_") == []
    assert [sku for _, sku in backend.listed(material="silk")] == ["HLY-9"]
    pages, token = [], ""
    while True:
        page = backend("ListCarpets", render_pb2.ListCarpetsRequest(page_size=2,
                                                                    page_token=token))
        pages.append([carpet.sku for carpet in page.carpets])
        token = page.next_page_token
        if not token:
            break
    assert pages == [["HLY-9", "KLM-4"], ["KLM-3", "KLM-2"], ["KLM-1", "KLM-0"]]


def test_every_change_and_refusal_is_audited_with_who_made_it(render_server, shops):
    first, second, first_staff, _ = shops
    carpet = first_staff.create("AUD-1")
    first_staff.update(carpet.id, ["name"], name="Audited")
    expect_error(lambda: first_staff.create("AUD-1"), grpc.StatusCode.ALREADY_EXISTS)
    theirs = Caller(render_server).create("AUD-2", organization_id=second.id)
    expect_error(lambda: first_staff.update(theirs.id, ["name"], name="x"), NOT_FOUND)
    entries = audit_entries()
    assert [(action, outcome, organization, actor) for action, outcome, organization, _, actor
            in entries] == [
        ("CreateCarpet", "ok", first.id, "sam"),
        ("UpdateCarpet", "ok", first.id, "sam"),
        ("CreateCarpet", "error:ALREADY_EXISTS", first.id, "sam"),
        ("CreateCarpet", "ok", second.id, "web"),
        ("UpdateCarpet", "error:NOT_FOUND", None, "sam")]
    details = json.loads(models.RenderAudit.select().order_by(models.RenderAudit.id)
                         .first().details)
    assert details == {"sku": "AUD-1", "sizes": "160x230"}


def test_an_import_answer_never_echoes_a_huge_input(render_server):
    """A megabyte SKU on ten lines is refused row by row, its report naming each row by at most
    64 characters (found by the fuzz test: the answer outgrew a message, the client's 4 MB)."""
    report = render_server.renders.ImportCarpets(render_pb2.ImportCarpetsRequest(
        carpets=[render_pb2.ImportedCarpet(lines=list(range(2, 12)), sku="x" * 2**20,
                                           name="n", sizes=[size(100, 150)])]), timeout=30)
    assert report.rejected == 10
    assert {(row.sku, row.errors[0].code) for row in report.rows} == {("x" * 64, "TOO_LONG")}
    assert all(len(row.errors[0].message) <= 200 for row in report.rows)
