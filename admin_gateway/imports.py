"""`POST /admin/carpets/import`: a catalogue from a spreadsheet (`docs/catalogue.md`).

The upload (multipart: `file` CSV or XLSX, optional `pictures` ZIP, `dryRun`, optional
`organizationId`) is read here, bounded at every step: the whole upload (MAX_UPLOAD_BYTES), the
rows (MAX_ROWS), what the ZIP and the XLSX (itself a ZIP) unpack to (a ZIP bomb is refused
before anything is unpacked), each picture. A row the file itself gets wrong (a missing or
non-numeric size, a formula, a picture not in the ZIP) is reported here with its line and
column; the rest go to the render service as designs (the rows of one SKU are its sizes),
which creates or updates them and reports each row. A file that cannot be read at all is
refused whole (ImportRefused: 400) and nothing changes.

CSV: UTF-8 (with or without a byte-order mark) or, failing that, Windows-1254 (what Turkish
Excel writes); `,`, `;` or tab between fields, found from the header line."""
from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from admin_gateway.forms import form_parts, part_bytes, part_text
from protos.carpet.render.v1 import render_pb2

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # one call to the render service carries it all
MAX_ROWS = 10_000
MAX_PICTURE_BYTES = 10 * 1024 * 1024
MAX_ZIP_ENTRIES = 5_000
MAX_UNPACKED_BYTES = 64 * 1024 * 1024  # what a ZIP (or an XLSX) may unpack to in all
MAX_RATIO = 100  # unpacked / packed, per entry: more is a ZIP bomb
COLUMNS = ("sku", "name", "material", "width_cm", "length_cm", "image")
REQUIRED_COLUMNS = ("sku", "name", "width_cm", "length_cm")
FORMULA_START = ("=", "+", "-", "@")
MAX_CM = 10_000


class ImportRefused(ValueError):
    """The upload cannot be imported at all; the message says why."""


@dataclass
class Row:
    line: int
    values: dict[str, str]
    problems: list[render_pb2.CarpetImportProblem] = field(default_factory=list)

    def refuse(self, column: str, code: str, message: str) -> None:
        self.problems.append(render_pb2.CarpetImportProblem(column=column, code=code,
                                                            message=message[:200]))


@dataclass(frozen=True)
class Upload:
    file_name: str
    file: bytes
    pictures: bytes  # a ZIP, or b""
    dry_run: bool
    organization_id: int


def read_upload(content_type: str, body: bytes) -> Upload:
    """The multipart form's parts (the body is already bounded by MAX_UPLOAD_BYTES)."""
    parts = form_parts(content_type, body)
    if parts is None:
        raise ImportRefused("send multipart/form-data with a `file` part (CSV or XLSX)")
    if "file" not in parts:
        raise ImportRefused("the form has no `file` part (CSV or XLSX)")
    dry_run = part_text(parts, "dryRun", "true").lower()
    if dry_run not in ("true", "false"):
        raise ImportRefused("dryRun must be true or false")
    organization = part_text(parts, "organizationId", "0")
    if not organization.isdigit() or len(organization) > 18:
        raise ImportRefused("organizationId must be a number")
    return Upload(file_name=parts["file"].get_filename() or "", dry_run=dry_run == "true",
                  file=part_bytes(parts, "file"), pictures=part_bytes(parts, "pictures"),
                  organization_id=int(organization))


def read_rows(upload: Upload) -> list[Row]:
    """The file's rows as text by column name, each with its line number."""
    if upload.file.startswith(b"PK\x03\x04"):
        rows = list(_xlsx_rows(upload.file))
    else:
        rows = list(_csv_rows(upload.file))
    if not rows:
        raise ImportRefused("the file has a header and no rows")
    return rows


def _decoded(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "strict")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1254", "replace")  # Windows Turkish, as Excel writes it


def _header(cells: list[str]) -> list[str]:
    names = [str(cell or "").strip().lower() for cell in cells]
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    if missing:
        raise ImportRefused(f"the header lacks {', '.join(missing)}; the columns are "
                            f"{','.join(COLUMNS)}")
    return names


def _csv_rows(data: bytes) -> Iterator[Row]:
    text = _decoded(data)
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        names = _header(next(reader))
    except StopIteration:
        raise ImportRefused("the file is empty") from None
    except csv.Error as error:
        raise ImportRefused(f"the file is not CSV: {error}") from None
    count = 0
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            count += 1
            if count > MAX_ROWS:
                raise ImportRefused(f"the file has more than {MAX_ROWS} rows")
            yield Row(reader.line_num, dict(zip(names, cells, strict=False)))
    except csv.Error as error:
        raise ImportRefused(f"line {reader.line_num} is not CSV: {error}") from None


def _xlsx_rows(data: bytes) -> Iterator[Row]:
    """The first sheet's rows. openpyxl reads with defusedxml installed (no XML entity
    tricks); the archive is checked for a ZIP bomb before it is opened."""
    import openpyxl

    _check_archive(data, "the XLSX file")
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable workbook is one refusal
        raise ImportRefused(f"the file is neither CSV nor a readable XLSX workbook "
                            f"({type(error).__name__})") from None
    try:
        sheet = book.worksheets[0]
        cells = sheet.iter_rows(values_only=True)
        try:
            names = _header(list(next(cells)))
        except StopIteration:
            raise ImportRefused("the sheet is empty") from None
        count = 0
        for number, values in enumerate(cells, start=2):
            if not any(value not in (None, "") for value in values):
                continue
            count += 1
            if count > MAX_ROWS:
                raise ImportRefused(f"the sheet has more than {MAX_ROWS} rows")
            yield Row(number, {name: _cell_text(value)
                               for name, value in zip(names, values, strict=False)})
    finally:
        book.close()


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_archive(data: bytes, what: str) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ImportRefused(f"{what} is not a ZIP archive") from None
    entries = archive.infolist()
    if len(entries) > MAX_ZIP_ENTRIES:
        raise ImportRefused(f"{what} holds more than {MAX_ZIP_ENTRIES} files")
    if sum(entry.file_size for entry in entries) > MAX_UNPACKED_BYTES:
        raise ImportRefused(f"{what} unpacks to more than {MAX_UNPACKED_BYTES // 2**20} MiB")
    for entry in entries:
        if entry.file_size > MAX_RATIO * max(entry.compress_size, 1) + 1024:
            raise ImportRefused(f"{what}: {entry.filename[:100]!r} unpacks to more than "
                                f"{MAX_RATIO} times its size (a ZIP bomb?)")
    return archive


class Pictures:
    """The pictures of the optional ZIP, by file name (its path or its base name, any case),
    read when a row names one."""

    def __init__(self, data: bytes):
        self._archive = _check_archive(data, "the pictures ZIP") if data else None
        self._by_name: dict[str, zipfile.ZipInfo] = {}
        if self._archive is not None:
            for entry in self._archive.infolist():
                if not entry.is_dir():
                    self._by_name.setdefault(entry.filename.lower(), entry)
                    self._by_name.setdefault(entry.filename.rsplit("/", 1)[-1].lower(), entry)

    def read(self, name: str) -> bytes | None:
        entry = self._by_name.get(name.strip().lower())
        if entry is None or self._archive is None:
            return None
        if entry.file_size > MAX_PICTURE_BYTES:
            raise ValueError(f"{name[:100]} is larger than {MAX_PICTURE_BYTES // 2**20} MB")
        return self._archive.read(entry)


def _number(row: Row, column: str) -> int | None:
    text = row.values.get(column, "").strip()
    if not text:
        row.refuse(column, "REQUIRED", f"{column} is empty")
        return None
    try:
        value = int(text)
    except ValueError:
        row.refuse(column, "NOT_A_NUMBER", f"{column} {text[:20]!r} is not a whole number")
        return None
    if not 1 <= value <= MAX_CM:
        row.refuse(column, "OUT_OF_RANGE", f"{column} must be between 1 and {MAX_CM}")
        return None
    return value


def designs(rows: list[Row], pictures: Pictures) -> list[render_pb2.ImportedCarpet]:
    """The rows grouped by SKU into designs (a row per size), each row checked for what the
    file alone can get wrong; a row with a problem is left out of its design."""
    by_sku: dict[str, render_pb2.ImportedCarpet] = {}
    for row in rows:
        for column in ("sku", "name", "material", "image"):
            if row.values.get(column, "").lstrip().startswith(FORMULA_START):
                row.refuse(column, "FORMULA", f"{column} starts like a spreadsheet formula")
        width, length = _number(row, "width_cm"), _number(row, "length_cm")
        sku = row.values.get("sku", "").strip()
        if not sku:
            row.refuse("sku", "REQUIRED", "sku is empty")
        if row.problems:
            continue
        image_name = row.values.get("image", "").strip()
        design = by_sku.get(sku)
        if design is not None and (design.name, design.material) != (
                row.values.get("name", "").strip(), row.values.get("material", "").strip()):
            row.refuse("name", "CONFLICTING_ROWS", f"another row of {sku} gives another name or "
                                                   f"material")
            continue
        image: bytes | None = b""
        image_url = ""
        if image_name.lower().startswith(("http://", "https://")):
            image_url = image_name  # fetched by the render service through its SSRF guard
        elif image_name:
            try:
                image = pictures.read(image_name)
            except ValueError as error:
                row.refuse("image", "PICTURE_INVALID", str(error))
                continue
            if image is None:
                row.refuse("image", "PICTURE_MISSING",
                           f"{image_name[:100]} is not in the pictures ZIP")
                continue
        if design is None:
            design = by_sku[sku] = render_pb2.ImportedCarpet(
                sku=sku, name=row.values.get("name", "").strip(),
                material=row.values.get("material", "").strip())
        if image and not (design.image or design.image_url):
            design.image = image
        if image_url and not (design.image or design.image_url):
            design.image_url = image_url
        design.lines.append(row.line)
        design.sizes.append(render_pb2.CarpetSize(width_cm=width, length_cm=length))
    return list(by_sku.values())


def merged_report(rows: list[Row], report: render_pb2.CarpetImportReport
                  ) -> render_pb2.CarpetImportReport:
    """The render service's report with the rows refused here, in the file's order."""
    refused = [render_pb2.CarpetImportRow(line=row.line, sku=row.values.get("sku", "")[:64],
                                          outcome="rejected", errors=row.problems)
               for row in rows if row.problems]
    merged = render_pb2.CarpetImportReport()
    merged.CopyFrom(report)
    merged.rejected += len(refused)
    del merged.rows[:]
    merged.rows.extend(sorted([*report.rows, *refused], key=lambda row: row.line))
    return merged
