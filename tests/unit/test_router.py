"""The admin HTTP router alone: which target a method and path reach, with no server."""
import pytest

from admin_gateway.router import UNKNOWN, Router


@pytest.fixture
def router():
    routes = Router()
    routes.add("GET", "/admin/carpets", "list")
    routes.add("POST", "/admin/carpets", "create")
    routes.add("GET", "/admin/carpets/{id}", "get")
    routes.add("PATCH", "/admin/carpets/{id}", "update")
    routes.add("GET", "/admin/carpets/import-report", "report")
    routes.add("GET", "/admin/renders/{id}/image", "image")
    routes.add("GET", "/admin/static/{name=**}", "static")
    return routes


@pytest.mark.parametrize(("method", "path", "target", "template", "params"), [
    ("GET", "/admin/carpets", "list", "/admin/carpets", {}),
    ("POST", "/admin/carpets/", "create", "/admin/carpets", {}),  # a trailing slash is the same
    ("GET", "/admin/carpets/42", "get", "/admin/carpets/{id}", {"id": "42"}),
    ("PATCH", "/admin/carpets/42", "update", "/admin/carpets/{id}", {"id": "42"}),
    # An exact path wins over a template (and `import-report` is no id anyway).
    ("GET", "/admin/carpets/import-report", "report", "/admin/carpets/import-report", {}),
    ("GET", "/admin/renders/7/image", "image", "/admin/renders/{id}/image", {"id": "7"}),
    ("GET", "/admin/static/i18n/tr.json", "static", "/admin/static/{name=**}",
     {"name": "i18n/tr.json"}),
    ("GET", "/admin/carpets/999999999999999999", "get", "/admin/carpets/{id}",
     {"id": "999999999999999999"}),
])
def test_a_route_is_found_with_its_variables(router, method, path, target, template, params):
    found = router.match(method, path)
    assert (found.status, found.target, found.template, found.params) == (
        200, target, template, params)


@pytest.mark.parametrize("path", [
    "/admin/carpets/abc",  # ids are digits
    "/admin/carpets/-1",
    "/admin/carpets/1234567890123456789",  # 19 digits: beyond an int64's id
    "/admin/carpets/1/2",
    "/admin/renders//image",
    "/admin/static/",  # `**` is at least one character
    "/nothing",
    "",
])
def test_an_unknown_path_is_404_with_a_fixed_label(router, path):
    found = router.match("GET", path)
    assert (found.status, found.target, found.template) == (404, None, UNKNOWN)


def test_a_known_path_with_another_method_is_405_naming_the_allowed(router):
    found = router.match("DELETE", "/admin/carpets/5")
    assert (found.status, found.target, found.template, found.allowed) == (
        405, None, "/admin/carpets/{id}", ("GET", "PATCH"))
    assert router.match("PUT", "/admin/carpets").allowed == ("GET", "POST")


def test_a_route_declared_twice_is_refused(router):
    with pytest.raises(ValueError, match="GET /admin/carpets/{id} is routed twice"):
        router.add("GET", "/admin/carpets/{id}/", "again")


def test_routes_lists_every_method_and_template(router):
    assert router.routes() == [
        ("GET", "/admin/carpets"), ("GET", "/admin/carpets/import-report"),
        ("GET", "/admin/carpets/{id}"), ("GET", "/admin/renders/{id}/image"),
        ("GET", "/admin/static/{name=**}"), ("PATCH", "/admin/carpets/{id}"),
        ("POST", "/admin/carpets")]


def test_a_segment_is_an_id_or_a_token():
    with pytest.raises(ValueError, match=r"a path segment is \{id\} or \{token\}, not \{name\}"):
        Router().add("GET", "/admin/users/{name}", "user")


@pytest.fixture
def public():
    """The widget's public API and the share pages, from their own tables."""
    from admin_gateway import public_api, share_page

    return Router.of(public_api.ROUTES + share_page.ROUTES)


@pytest.mark.parametrize(("method", "path", "target", "params"), [
    ("GET", "/public/v1/carpets", "_carpets", {}),
    ("GET", "/public/v1/carpets/12/thumbnail", "_thumbnail", {"id": "12"}),
    ("POST", "/public/v1/renders", "_submit", {}),
    ("GET", "/public/v1/renders/Ab-_9xYz", "_render", {"token": "Ab-_9xYz"}),
    ("GET", "/public/v1/renders/Ab-_9xYz/events", "_events", {"token": "Ab-_9xYz"}),
    ("GET", "/public/v1/renders/Ab-_9xYz/image", "_image", {"token": "Ab-_9xYz"}),
    ("POST", "/public/v1/renders/Ab-_9xYz/share", "_share", {"token": "Ab-_9xYz"}),
    ("POST", "/public/v1/leads", "_lead", {}),
    ("POST", "/public/v1/events", "_event", {}),
    ("GET", "/s/share.css", "_style_sheet", {}),  # the exact path, not a token
    ("GET", "/s/" + "a" * 32, "_shared_page", {"token": "a" * 32}),
    ("GET", "/s/" + "a" * 32 + "/logo", "_logo", {"token": "a" * 32}),
    ("POST", "/s/" + "a" * 32 + "/lead", "_lead_form", {"token": "a" * 32}),
])
def test_the_public_routes(public, method, path, target, params):
    found = public.match(method, path)
    assert (found.status, found.target, found.params) == (200, target, params)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/public/v1/carpets/abc/thumbnail", 404),  # a carpet's id is digits
    ("GET", "/public/v1/renders/" + "a" * 33, 404),  # a token is at most 32 characters
    ("GET", "/public/v1/renders/a.b", 404),
    ("GET", "/public/v1/renders/abc/share", 405),  # sharing is a POST
    ("DELETE", "/public/v1/renders/abc", 405),
    ("POST", "/s/share.css", 405),
    ("GET", "/s/", 404),
])
def test_the_public_routes_refuse(public, method, path, status):
    found = public.match(method, path)
    assert (found.status, found.target) == (status, None)
