"""AccountService through a real server (port 0, every interceptor), on SQLite and PostgreSQL."""
import grpc
import pytest

from protos.carpet.credit.v1 import account_pb2
from tests.builders import create_org, create_user, expect_error, staff_token
from tests.helpers import ADMIN, bearer, credit_stubs

pytestmark = pytest.mark.usefixtures("engine")


def test_create_get_and_list_organizations(credit_server):
    first = create_org(credit_server, "Acme", 100)
    assert (first.name, first.balance, first.held) == ("Acme", 100, 0)
    assert first.created_at.seconds > 0
    fetched = credit_server.accounts.GetOrganization(
        account_pb2.GetOrganizationRequest(id=first.id), timeout=10)
    assert fetched == first
    for index in range(4):
        create_org(credit_server, f"Shop {index}", index)

    names, token = [], ""
    while True:
        page = credit_server.accounts.ListOrganizations(
            account_pb2.ListOrganizationsRequest(page_size=2, page_token=token),
            metadata=ADMIN, timeout=10)
        names.extend(org.name for org in page.organizations)
        token = page.next_page_token
        if not token:
            break
    assert names == ["Shop 3", "Shop 2", "Shop 1", "Shop 0", "Acme"]  # newest first


def test_create_organization_errors(credit_server):
    create_org(credit_server, "Acme")
    expect_error(lambda: create_org(credit_server, "Acme"), grpc.StatusCode.ALREADY_EXISTS)
    expect_error(lambda: create_org(credit_server, "  "), grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: create_org(credit_server, "x" * 201), grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: create_org(credit_server, "Neg", -1), grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: credit_server.accounts.GetOrganization(
        account_pb2.GetOrganizationRequest(id=999), timeout=10), grpc.StatusCode.NOT_FOUND)


def test_list_paging_errors(credit_server):
    for size in (-1, 501):
        expect_error(lambda size=size: credit_server.accounts.ListOrganizations(
            account_pb2.ListOrganizationsRequest(page_size=size), metadata=ADMIN, timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: credit_server.accounts.ListUsers(
        account_pb2.ListUsersRequest(page_token="not-a-token"), metadata=ADMIN, timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT)


def test_create_and_read_users(credit_server):
    organization = create_org(credit_server, "Acme", 70)
    user = create_user(credit_server, organization.id, "  Ada@Example.COM ",
                       account_pb2.ROLE_ADMIN)
    assert (user.email, user.role, user.organization_name, user.credit) == (
        "ada@example.com", account_pb2.ROLE_ADMIN, "Acme", 70)
    assert credit_server.accounts.GetUser(account_pb2.GetUserRequest(id=user.id),
                                          timeout=10) == user
    other = create_user(credit_server, organization.id, "bob@example.com")
    gateway = credit_stubs(credit_server.port, "admin-gateway")
    batch = gateway.accounts.BatchGetUsers(
        account_pb2.BatchGetUsersRequest(ids=[other.id, user.id, 9999, user.id]), timeout=10)
    assert sorted(u.id for u in batch.users) == sorted([user.id, other.id])
    listed = credit_server.accounts.ListUsers(account_pb2.ListUsersRequest(), metadata=ADMIN,
                                              timeout=10)
    assert [u.email for u in listed.users] == ["bob@example.com", "ada@example.com"]
    assert all(u.organization_name == "Acme" and u.credit == 70 for u in listed.users)
    only_admins = credit_server.accounts.ListUsers(
        account_pb2.ListUsersRequest(role=account_pb2.ROLE_ADMIN), metadata=ADMIN, timeout=10)
    assert [u.email for u in only_admins.users] == ["ada@example.com"]


def test_batch_users_are_what_the_user_list_shows(credit_server):
    """BatchGetUsers (and GetUser) read with a hand-written statement (one per power of two of
    ids, the list padded); ListUsers through the query builder. Each user the statement answers
    is the very message the list shows, however many ids are asked for, unknown ones left
    out."""
    organization = create_org(credit_server, "Acme", 70)
    users = [create_user(credit_server, organization.id, f"u{i}@example.com") for i in range(5)]
    credit_server.accounts.SetUserPassword(account_pb2.SetUserPasswordRequest(
        id=users[1].id, password="a long enough password 7"), metadata=ADMIN, timeout=10)
    credit_server.accounts.DeactivateUser(account_pb2.SetUserActiveRequest(id=users[2].id),
                                          metadata=ADMIN, timeout=10)
    listed = credit_server.accounts.ListUsers(account_pb2.ListUsersRequest(
        organization_id=organization.id), metadata=ADMIN, timeout=10).users
    shown = {user.id: user for user in listed}
    assert sorted(shown) == sorted(user.id for user in users)
    assert (shown[users[1].id].has_password, shown[users[2].id].active) == (True, False)
    assert all(user.credit == 70 and user.organization_name == "Acme" for user in listed)
    for user in users:
        assert credit_server.accounts.GetUser(account_pb2.GetUserRequest(id=user.id),
                                              timeout=10) == shown[user.id]
    gateway = credit_stubs(credit_server.port, "admin-gateway")
    ids = sorted(shown)
    for asked in ([ids[0]], ids[:3], ids, [*ids, *range(10**6, 10**6 + 495)]):
        batch = gateway.accounts.BatchGetUsers(account_pb2.BatchGetUsersRequest(ids=asked),
                                               timeout=10)
        assert sorted(batch.users, key=lambda user: user.id) == [
            shown[user_id] for user_id in ids if user_id in asked]


def test_create_user_errors(credit_server):
    organization = create_org(credit_server)
    create_user(credit_server, organization.id, "ada@example.com")
    expect_error(lambda: create_user(credit_server, organization.id, "ADA@EXAMPLE.com"),
                 grpc.StatusCode.ALREADY_EXISTS)
    for email in ("not-an-email", "a@b", "two@@example.com", ""):
        expect_error(lambda email=email: create_user(credit_server, organization.id, email),
                     grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: create_user(credit_server, organization.id, "x@example.com",
                                     role=account_pb2.ROLE_UNSPECIFIED),
                 grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: create_user(credit_server, organization.id, "y@example.com", role=42),
                 grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: create_user(credit_server, 999, "z@example.com"),
                 grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: credit_server.accounts.GetUser(account_pb2.GetUserRequest(id=999),
                                                        timeout=10), grpc.StatusCode.NOT_FOUND)
    gateway = credit_stubs(credit_server.port, "admin-gateway")
    expect_error(lambda: gateway.accounts.BatchGetUsers(
        account_pb2.BatchGetUsersRequest(ids=list(range(1, 502))), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT)


def test_staff_reads_only_its_own_organisation(credit_server):
    mine = create_org(credit_server, "Mine")
    theirs = create_org(credit_server, "Theirs")
    create_user(credit_server, mine.id, "me@example.com")
    create_user(credit_server, theirs.id, "them@example.com")
    staff = bearer(staff_token(mine.id))
    listed = credit_server.accounts.ListUsers(account_pb2.ListUsersRequest(), metadata=staff,
                                              timeout=10)
    assert [u.email for u in listed.users] == ["me@example.com"]
    expect_error(lambda: credit_server.accounts.ListUsers(
        account_pb2.ListUsersRequest(organization_id=theirs.id), metadata=staff, timeout=10),
        grpc.StatusCode.PERMISSION_DENIED)
    expect_error(lambda: credit_server.accounts.CreateOrganization(
        account_pb2.CreateOrganizationRequest(name="Nope"), metadata=staff, timeout=10),
        grpc.StatusCode.PERMISSION_DENIED)
    expect_error(lambda: credit_server.accounts.ListOrganizations(
        account_pb2.ListOrganizationsRequest(), metadata=staff, timeout=10),
        grpc.StatusCode.PERMISSION_DENIED)
