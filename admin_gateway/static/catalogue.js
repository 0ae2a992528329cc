// The catalogue screen: a shop's carpets (and the shared ones), with their pictures and sizes;
// adding and changing a carpet, archiving and restoring it, and importing a spreadsheet — a
// check first (nothing changes), then the import. ADMIN manages every catalogue; STAFF their
// own organisation's, and sees the shared one.
"use strict";

import * as api from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import {
  $, PagedList, button, cell, clearInvalid, fileBase64, guarded, invalid, labelCells, notify,
} from "./ui.js";

const MAX_PICTURE_BYTES = 10 * 1024 * 1024;
const MAX_CM = 10000;
const MAX_SIZES = 20;

let shared;  // { state, organizationName } from app.js
let editing = null;  // the carpet being changed, or null: the form adds one

const catalogueName = (carpet) => {
  if (carpet.organizationId === "0") return t("catalogue.shared");
  return shared.state.admin ? shared.organizationName(carpet.organizationId) : t("catalogue.own");
};
const sizesText = (carpet) => (carpet.sizes || [])
  .map((size) => `${i18n.number(size.widthCm)} × ${i18n.number(size.lengthCm)}`
                 + (size.sku ? ` (${size.sku})` : "")).join(", ");
// STAFF see the shared catalogue but change only their own.
const changeable = (carpet) => shared.state.admin || carpet.organizationId !== "0";

let carpets;  // the PagedList, made in setUp
let rendered = new Map();  // carpet id -> Map(size id -> renders over the last 30 days)
export const list = () => carpets;

// Renders over the last 30 days (GET /admin/usage), with the sizes when more than one was.
function rendersText(carpet) {
  const bySize = rendered.get(carpet.id) || new Map();
  const total = [...bySize.values()].reduce((sum, count) => sum + count, 0);
  if (bySize.size < 2) return i18n.number(total);
  const parts = (carpet.sizes || []).filter((size) => bySize.has(size.id)).map((size) =>
    `${i18n.number(size.widthCm)} × ${i18n.number(size.lengthCm)}: ${i18n.number(bySize.get(size.id))}`);
  return parts.length ? `${i18n.number(total)} (${parts.join(", ")})` : i18n.number(total);
}

async function loadRendered() {
  const organizationId = shared.state.admin ? $("carpet-filter-org").value : "";
  const usage = await api.api(`/admin/usage${organizationId ? `?organizationId=${organizationId}` : ""}`);
  rendered = new Map();
  for (const row of usage.carpets || []) {
    if (!rendered.has(row.carpetId)) rendered.set(row.carpetId, new Map());
    rendered.get(row.carpetId).set(row.carpetSizeId, Number(row.renders));
  }
}

async function reloadCarpets() {
  await loadRendered();
  await carpets.reload();
}

function carpetRow(carpet) {
  const row = document.createElement("tr");
  const picture = cell(row, "");
  api.blobUrl(`/admin/carpets/${carpet.id}/thumbnail`).then((url) => {
    const image = document.createElement("img");
    image.alt = t("catalogue.pictureOf", { name: carpet.name });
    image.src = url;
    picture.replaceChildren(image);
  }).catch(() => { /* no picture shown */ });
  [carpet.sku, carpet.name, carpet.material, sizesText(carpet), catalogueName(carpet),
   carpet.archivedAt ? t("catalogue.archived") : t("catalogue.active"), rendersText(carpet)]
    .forEach((value) => cell(row, value));
  const actions = cell(row, "");
  if (changeable(carpet)) {
    const edit = button(t("catalogue.edit"), () => startEditing(carpet));
    edit.setAttribute("aria-label", t("catalogue.editNamed", { sku: carpet.sku }));
    const archive = carpet.archivedAt
      ? button(t("catalogue.restore"), () => setArchived(carpet, false))
      : button(t("catalogue.archive"), () => setArchived(carpet, true));
    archive.setAttribute("aria-label", `${archive.textContent}: ${carpet.sku}`);
    actions.append(edit, archive);
  }
  return row;
}

// ---- the carpet form ------------------------------------------------------------------------

function sizeRow(size = {}) {
  const row = document.createElement("div");
  row.className = "size-row";
  row.dataset.sizeId = size.id || "";
  const field = (name, value, width) => {
    const label = document.createElement("label");
    const text = document.createElement("span");
    text.textContent = t(`catalogue.${name}`);
    const input = document.createElement("input");
    Object.assign(input, { value: value || "", autocomplete: "off", className: `size-${name}` });
    input.maxLength = width;
    if (name !== "sizeSku") input.inputMode = "numeric";
    // A size's measurements never change once it exists (renders show them).
    if (size.id && name !== "sizeSku") input.readOnly = true;
    label.append(text, input);
    return label;
  };
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = t("catalogue.removeSize");
  remove.addEventListener("click", () => row.remove());
  row.append(field("width", size.widthCm, 5), field("length", size.lengthCm, 5),
             field("sizeSku", size.sku, 64), remove);
  return row;
}

function resetForm() {
  editing = null;
  const form = $("carpet-form");
  form.reset();
  clearInvalid(form);
  $("carpet-form-title").textContent = t("catalogue.add");
  $("carpet-sku").readOnly = false;
  $("carpet-org-label").hidden = !shared.state.admin;
  $("carpet-new").hidden = true;
  $("carpet-sizes").replaceChildren($("carpet-sizes").querySelector("legend"), sizeRow());
}

function startEditing(carpet) {
  resetForm();
  editing = carpet;
  $("carpet-form-title").textContent = t("catalogue.editTitle", { sku: carpet.sku });
  $("carpet-sku").value = carpet.sku;
  $("carpet-sku").readOnly = true;  // a design keeps its SKU: it is how imports find it
  $("carpet-name").value = carpet.name;
  $("carpet-material-field").value = carpet.material;
  $("carpet-org-label").hidden = true;
  $("carpet-new").hidden = false;
  $("carpet-sizes").replaceChildren($("carpet-sizes").querySelector("legend"),
                                    ...(carpet.sizes || []).map(sizeRow));
  $("carpet-name").focus();
}

function readSizes() {
  const sizes = [];
  for (const row of $("carpet-sizes").querySelectorAll(".size-row")) {
    const width = row.querySelector(".size-width");
    const length = row.querySelector(".size-length");
    for (const field of [width, length]) {
      const value = field.value.trim();
      if (!/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > MAX_CM) {
        invalid(field, t("catalogue.badSize"));
        return null;
      }
    }
    sizes.push({ ...(row.dataset.sizeId ? { id: row.dataset.sizeId } : {}),
                 widthCm: Number(width.value), lengthCm: Number(length.value),
                 sku: row.querySelector(".size-sizeSku").value.trim() });
  }
  if (!sizes.length || sizes.length > MAX_SIZES) {
    invalid($("carpet-add-size"), t("catalogue.noSizes", { most: MAX_SIZES }));
    return null;
  }
  return sizes;
}

async function save(event) {
  event.preventDefault();
  const form = $("carpet-form");
  clearInvalid(form);
  const sku = $("carpet-sku").value.trim();
  const name = $("carpet-name").value.trim();
  if (!sku) return invalid($("carpet-sku"), t("catalogue.badSku"));
  if (!name) return invalid($("carpet-name"), t("catalogue.badName"));
  const sizes = readSizes();
  if (sizes === null) return;
  const file = $("carpet-picture").files[0];
  if (!file && !editing) return invalid($("carpet-picture"), t("catalogue.needPicture"));
  if (file && file.size > MAX_PICTURE_BYTES) {
    return invalid($("carpet-picture"), t("catalogue.pictureTooLarge"));
  }
  const body = { name, material: $("carpet-material-field").value.trim(), sizes };
  if (file) body.image = await fileBase64(file);
  if (editing) {
    await api.api(`/admin/carpets/${editing.id}`, { method: "PATCH", body });
    notify(t("catalogue.changed", { sku }));
  } else {
    const organizationId = shared.state.admin ? $("carpet-org").value || "0" : "0";
    await api.api("/admin/carpets", { method: "POST",
                                       body: { ...body, sku, organizationId } });
    notify(t("catalogue.added", { sku }));
  }
  resetForm();
  await reloadCarpets();
}

async function setArchived(carpet, archived) {
  if (archived && !window.confirm(t("catalogue.confirmArchive", { sku: carpet.sku, name: carpet.name }))) {
    return;
  }
  await api.api(`/admin/carpets/${carpet.id}/${archived ? "archive" : "restore"}`, { method: "POST" });
  notify(t(archived ? "catalogue.archivedDone" : "catalogue.restoredDone", { sku: carpet.sku }));
  await carpets.reload();
}

// ---- import -------------------------------------------------------------------------------

function importForm(dryRun) {
  const form = new FormData();
  form.append("file", $("import-file").files[0]);
  if ($("import-pictures").files[0]) form.append("pictures", $("import-pictures").files[0]);
  form.append("dryRun", dryRun ? "true" : "false");
  if (shared.state.admin) form.append("organizationId", $("import-org").value || "0");
  return form;
}

function showReport(report, applied) {
  const counts = Object.fromEntries(["created", "updated", "unchanged", "rejected"]
    .map((key) => [key, i18n.number(report[key] || 0)]));
  $("import-summary").textContent = t(applied ? "catalogue.imported" : "catalogue.checked", counts);
  const body = $("import-report").querySelector("tbody");
  body.replaceChildren();
  for (const row of report.rows || []) {
    const line = body.insertRow();
    [i18n.number(row.line), row.sku, t(`importOutcome.${row.outcome}`),
     (row.errors || []).map((problem) =>
       `${problem.column ? `${problem.column}: ` : ""}${i18n.known(`importProblem.${problem.code}`, problem.message)}`)
       .join("; ")].forEach((value) => cell(line, value));
    if (row.outcome === "rejected") line.className = "status-failed";
  }
  labelCells($("import-report"));
  $("import-report-box").hidden = false;
}

async function check(event) {
  event.preventDefault();
  clearInvalid($("import-form"));
  $("import-apply").disabled = true;
  if (!$("import-file").files[0]) return invalid($("import-file"), t("catalogue.noFile"));
  showReport(await api.upload("/admin/carpets/import", importForm(true)), false);
  $("import-apply").disabled = false;  // what was checked can now be imported
}

async function apply() {
  $("import-apply").disabled = true;
  showReport(await api.upload("/admin/carpets/import", importForm(false)), true);
  await carpets.reload();
}

export async function load() {
  resetForm();
  await reloadCarpets();
}

export function setUp(context) {
  shared = context;
  carpets = new PagedList("carpets", {
    path: "/admin/carpets", items: "carpets", row: carpetRow,
    query: () => ({
      organizationId: shared.state.admin ? $("carpet-filter-org").value : "",
      query: $("carpet-query").value.trim(), material: $("carpet-material").value.trim(),
      includeArchived: $("carpet-archived").checked ? "true" : "",
    }),
  });
  $("carpet-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(reloadCarpets);
  });
  $("carpet-form").addEventListener("submit", (event) => guarded(() => save(event)));
  $("carpet-add-size").addEventListener("click", () => {
    $("carpet-sizes").appendChild(sizeRow());
  });
  $("carpet-new").addEventListener("click", resetForm);
  $("import-form").addEventListener("submit", (event) => guarded(() => check(event)));
  $("import-apply").addEventListener("click", () => guarded(apply));
  for (const id of ["import-file", "import-pictures", "import-org"]) {
    $(id).addEventListener("change", () => { $("import-apply").disabled = true; });
  }
}
