"""Pictures an imported catalogue names by address: fetched by the render service through the
SSRF guard, each at most once, before the import's transaction; a refused or broken address is
that row's problem (both engines; a real HTTP server on loopback, allowed here as
WEBHOOK_ALLOW_PRIVATE=1 allows it in development)."""
import dataclasses
import http.server
import threading

import pytest

from tests.fake_image_api import tiny_png
from tests.integration.test_catalogue_import import HEADER, counts, outcomes, upload

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def render_settings(render_settings):
    return dataclasses.replace(render_settings, webhook_allow_private=True)


@pytest.fixture
def pictures():
    """A picture server: /kilim.png, /text (not a picture), /gone (404), /moved (a redirect);
    `asked` counts the requests per path."""
    asked: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            asked[self.path] = asked.get(self.path, 0) + 1
            status, body, headers = {
                "/kilim.png": (200, tiny_png(), {"Content-Type": "image/png"}),
                "/text": (200, b"just words", {"Content-Type": "text/plain"}),
                "/moved": (302, b"", {"Location": "/kilim.png"}),
            }.get(self.path, (404, b"", {}))
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", asked
    server.shutdown()
    server.server_close()


def test_pictures_by_address_are_fetched_once_and_checked(http_gateway, pictures):
    base, asked = pictures
    file = (HEADER + f"URL-1,Kilim,wool,100,150,{base}/kilim.png\n"
                     f"URL-1,Kilim,wool,80,120,\n"
                     f"URL-2,Same picture,wool,100,150,{base}/kilim.png\n"
                     f"URL-3,Words,wool,100,150,{base}/text\n"
                     f"URL-4,Gone,wool,100,150,{base}/gone\n"
                     f"URL-5,Moved,wool,100,150,{base}/moved\n").encode()
    status, report = upload(http_gateway, file=file)
    assert status == 200, report
    assert outcomes(report) == [
        (2, "URL-1", "created", []), (3, "URL-1", "created", []), (4, "URL-2", "created", []),
        (5, "URL-3", "rejected", [("image", "PICTURE_INVALID")]),
        (6, "URL-4", "rejected", [("image", "PICTURE_UNREACHABLE")]),
        (7, "URL-5", "rejected", [("image", "PICTURE_UNREACHABLE")])]
    assert counts(report) == (3, 0, 0, 3)
    moved = [row for row in report["rows"] if row["sku"] == "URL-5"][0]
    assert "HTTP 302" in moved["errors"][0]["message"]  # a redirect is never followed
    assert asked == {"/kilim.png": 1, "/text": 1, "/gone": 1, "/moved": 1}
