"""The catalogue import at the size a shop brings: 10,000 rows (2,000 designs in 5 sizes each)
with 2,000 distinct pictures in a ZIP, through a real gateway and render service over HTTP —
a dry run, the import, and the same file again (which changes nothing). The gateway's resident
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


def _multipart(fields: dict[str, tuple[str, bytes]]) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename
                                                     else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n").encode() \
            + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


def measure(http_address: str, admin_token: str, gateway_rss_kb) -> dict:
    """Seconds and the gateway's peak memory for the dry run, the import and the re-import."""
    import json

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
        started = time.monotonic()
        request = urllib.request.Request(
            f"http://{http_address}/admin/carpets/import", data=body, method="POST",
            headers={"Content-Type": content_type, "x-admin-token": admin_token})
        with urllib.request.urlopen(request, timeout=3600) as response:
            report = json.loads(response.read())
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
        result[label] = {"seconds": round(seconds, 1),
                         **{key: int(report[key]) for key in ("created", "updated",
                                                              "unchanged", "rejected")},
                         "gateway_rss_mb_before": round(before / 1024, 1),
                         "gateway_rss_mb_peak": round(max(peak[0], before) / 1024, 1)}
        print(f"catalogue import {label}: {result[label]}", flush=True)
    return result
