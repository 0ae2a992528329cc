"""The catalogue import at the size a shop brings: 10,000 rows (2,000 designs in 5 sizes each)
with 2,000 distinct pictures in a ZIP, through a real gateway and render service over HTTP —
a dry run, the import, and the same file again (which changes nothing); then 10,000 rows whose
2,000 pictures are product-photo sized (about 100 kB each, 200 MB in all) and named by address,
served by a web server on loopback, which the render service fetches. The gateway's resident
memory is sampled while each upload is read."""
from __future__ import annotations

import io
import threading
import time
import urllib.request
import uuid
import zipfile

from PIL import Image

DESIGNS = 2_000
SIZES = ((80, 150), (120, 180), (160, 230), (200, 300), (240, 340))


def catalogue_files() -> tuple[bytes, bytes]:
    """The CSV and the pictures ZIP (each picture a different colour, so none is a copy)."""
    rows = ["sku,name,material,width_cm,length_cm,image"]
    pictures = io.BytesIO()
    with zipfile.ZipFile(pictures, "w", zipfile.ZIP_DEFLATED) as archive:
        for number in range(DESIGNS):
            picture = io.BytesIO()
            Image.new("RGB", (24, 36), (number % 256, number // 256 * 16 % 256, 90)).save(
                picture, format="PNG")
            archive.writestr(f"pictures/design-{number:04d}.png", picture.getvalue())
            rows += [f"BENCH-{number:04d},Design {number},wool,{width},{length},"
                     f"design-{number:04d}.png" for width, length in SIZES]
    return ("\n".join(rows) + "\n").encode(), pictures.getvalue()


def _photo(number: int) -> bytes:
    """A JPEG the size of a product photo: noise compresses badly, as a carpet's pile does."""
    import numpy

    pixels = numpy.random.default_rng(number).integers(0, 256, (240, 320, 3), dtype=numpy.uint8)
    picture = io.BytesIO()
    Image.fromarray(pixels).save(picture, format="JPEG", quality=90)
    return picture.getvalue()


class PhotoServer:
    """The shop's web server: design-NNNN.jpg for each design, on loopback."""

    def __init__(self):
        import http.server

        photos = {f"/design-{number:04d}.jpg": _photo(number) for number in range(DESIGNS)}
        self.total_bytes = sum(map(len, photos.values()))

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                body = photos.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _multipart(fields: dict[str, tuple[str, bytes]]) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename
                                                     else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n").encode() \
            + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


def _imported(http_address: str, admin_token: str, content_type: str, body: bytes) -> dict:
    """One import over HTTP: its seconds and the report's counts."""
    import json

    started = time.monotonic()
    request = urllib.request.Request(
        f"http://{http_address}/admin/carpets/import", data=body, method="POST",
        headers={"Content-Type": content_type, "x-admin-token": admin_token})
    with urllib.request.urlopen(request, timeout=3600) as response:
        report = json.loads(response.read())
    return {"seconds": round(time.monotonic() - started, 1),
            **{key: int(report[key]) for key in ("created", "updated", "unchanged", "rejected")}}


def measure(http_address: str, admin_token: str, gateway_rss_kb) -> dict:
    """Seconds and the gateway's peak memory for the dry run, the import and the re-import."""

    csv_file, pictures = catalogue_files()
    result = {"rows": DESIGNS * len(SIZES), "pictures": DESIGNS,
              "upload_mb": round((len(csv_file) + len(pictures)) / 2**20, 1)}
    for label, dry_run in (("dry_run", "true"), ("import", "false"), ("again", "false")):
        content_type, body = _multipart({"file": ("catalogue.csv", csv_file),
                                         "pictures": ("pictures.zip", pictures),
                                         "dryRun": ("", dry_run.encode())})
        before, peak, done = gateway_rss_kb(), [0], threading.Event()

        def sample(peak=peak, done=done):
            while not done.wait(0.05):
                peak[0] = max(peak[0], gateway_rss_kb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result[label] = _imported(http_address, admin_token, content_type, body)
        done.set()
        sampler.join()
        result[label].update({"gateway_rss_mb_before": round(before / 1024, 1),
                              "gateway_rss_mb_peak": round(max(peak[0], before) / 1024, 1)})
        print(f"catalogue import {label}: {result[label]}", flush=True)
    photos = PhotoServer()
    try:
        rows = ["sku,name,material,width_cm,length_cm,image"]
        for number in range(DESIGNS):
            rows += [f"PHOTO-{number:04d},Photo {number},wool,{width},{length},"
                     f"{photos.base}/design-{number:04d}.jpg" for width, length in SIZES]
        content_type, body = _multipart({"file": ("by-address.csv", ("\n".join(rows) + "\n")
                                                  .encode()), "dryRun": ("", b"false")})
        result["by_address"] = {**_imported(http_address, admin_token, content_type, body),
                                "pictures_mb": round(photos.total_bytes / 2**20, 1)}
        print(f"catalogue import by_address: {result['by_address']}", flush=True)
    finally:
        photos.stop()
    return result
