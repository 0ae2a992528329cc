// The widget keys screen (docs/widget.md): the publishable keys a shop's web pages show, each
// locked to its origins and capped; a new or rotated key is shown whole once, then only its last
// four characters. Below them the shop's logo on its share pages (docs/shares-and-leads.md).
// ADMIN manages every organisation's keys and logo; STAFF their own organisation's.
"use strict";

import * as api from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import {
  $, button, cell, clearInvalid, fileBase64, guarded, invalid, labelCells, notify,
} from "./ui.js";

const ORIGIN = /^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$|^https?:\/\/\[[0-9a-f:]+\](:\d{1,5})?$/i;
const RATE = /^\d{1,6}\s*\/\s*(second|minute|hour|day)$/;
const MAX_LOGO_BYTES = 2 * 1024 * 1024;

let shared;  // { state, organizationName } from app.js

export function setUp(from) {
  shared = from;
  $("key-form").addEventListener("submit", (event) => guarded(() => createKey(event)));
  $("logo-form").addEventListener("submit", (event) => guarded(() => saveLogo(event)));
  $("logo-remove").addEventListener("click", () => guarded(removeLogo));
  $("logo-org").addEventListener("change", () => guarded(loadLogo));
}

// Called when the screen changes: a key is shown once, not kept on the page.
export function forgetKey() {
  $("key-secret").textContent = "";
  $("key-secret-box").hidden = true;
}

function showKey(made) {
  $("key-secret").textContent = made.key;
  $("key-snippet").textContent =
    `<script src="${window.location.origin}/widget/v1/widget.js" data-key="${made.key}" defer></script>\n`
    + '<button type="button" data-carpet-sku="…"></button>';
  $("key-secret-box").hidden = false;
}

export async function load() {
  const organizationId = shared.state.admin ? $("key-filter-org").value : "";
  const answer = await api.api(`/admin/publishable-keys${organizationId ? `?organizationId=${organizationId}` : ""}`);
  const rows = (answer.publishableKeys || []).map(keyRow);
  if (!rows.length) {
    const empty = document.createElement("tr");
    cell(empty, t("common.empty")).colSpan = $("keys").querySelectorAll("th").length;
    rows.push(empty);
  }
  $("keys").querySelector("tbody").replaceChildren(...rows);
  labelCells($("keys"));
  await loadLogo();
}

function keyRow(key) {
  const row = document.createElement("tr");
  const origins = [...key.allowedOrigins];
  if (key.development) origins.push(t("keys.localhost"));
  [key.name || "—", `…${key.last4}`, shared.organizationName(key.organizationId), origins.join(", "),
   t("keys.caps", { day: i18n.number(key.rendersPerDay), concurrent: i18n.number(key.maxConcurrent),
                    rate: key.ratePerVisitor }),
   i18n.number(key.rendersToday || 0),
   key.revokedAt ? t("keys.revoked") : t("keys.active")].forEach((value) => cell(row, value));
  const actions = cell(row, "");
  if (!key.revokedAt) {
    const rotate = button(t("keys.rotate"), () => guarded(() => rotateKey(key)));
    rotate.setAttribute("aria-label", t("keys.rotateNamed", { last4: key.last4 }));
    const revoke = button(t("keys.revoke"), () => guarded(() => revokeKey(key)));
    revoke.setAttribute("aria-label", t("keys.revokeNamed", { last4: key.last4 }));
    actions.append(rotate, revoke);
  }
  return row;
}

async function createKey(event) {
  event.preventDefault();
  const form = $("key-form");
  clearInvalid(form);
  const origins = $("key-origins").value.split(/[\s,]+/).filter(Boolean);
  const development = $("key-development").checked;
  const wrong = origins.find((origin) => !ORIGIN.test(origin));
  if (wrong !== undefined || (!origins.length && !development)) {
    invalid($("key-origins"), t("keys.originsInvalid"));
    return;
  }
  const numbers = {};
  for (const [field, name, most] of [["key-day", "rendersPerDay", 1000000],
                                     ["key-concurrent", "maxConcurrent", 1000]]) {
    const raw = $(field).value.trim();
    if (!/^\d{1,7}$/.test(raw) || Number(raw) < 1 || Number(raw) > most) {
      invalid($(field), t("keys.numberInvalid", { most: i18n.number(most) }));
      return;
    }
    numbers[name] = Number(raw);
  }
  const rate = $("key-rate").value.trim();
  if (!RATE.test(rate)) {
    invalid($("key-rate"), t("keys.rateInvalid"));
    return;
  }
  const organizationId = shared.state.admin ? $("key-org").value : "0";
  const made = await api.api("/admin/publishable-keys", {
    method: "POST",
    body: { organizationId, name: $("key-name").value.trim(), allowedOrigins: origins, development,
            ratePerVisitor: rate, ...numbers },
  });
  showKey(made);
  notify(t("keys.created", { last4: made.last4 }));
  await load();
}

async function rotateKey(key) {
  if (!window.confirm(t("keys.confirmRotate", { last4: key.last4 }))) return;
  const made = await api.api(`/admin/publishable-keys/${key.id}/rotate`, {
    method: "POST", body: { overlapSeconds: 86400 },
  });
  showKey(made);
  notify(t("keys.rotated", { last4: key.last4 }));
  await load();
}

async function revokeKey(key) {
  if (!window.confirm(t("keys.confirmRevoke", { last4: key.last4 }))) return;
  await api.api(`/admin/publishable-keys/${key.id}/revoke`, { method: "POST", body: {} });
  forgetKey();
  notify(t("keys.revokedNotice", { last4: key.last4 }));
  await load();
}

// ---- the shop's logo ----------------------------------------------------------------------

const logoOwner = () => (shared.state.admin ? $("logo-org").value : shared.state.organizationId);

async function loadLogo() {
  const preview = $("logo-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.removeAttribute("src");
  let url = null;
  if (logoOwner()) {
    try {
      url = await api.blobUrl(`/admin/organizations/${logoOwner()}/logo`);
    } catch (error) {
      if (error.status !== 404) throw error;
    }
  }
  if (url) preview.src = url;
  preview.hidden = !url;
  $("logo-none").hidden = Boolean(url);
  $("logo-remove").hidden = !url;
}

async function saveLogo(event) {
  event.preventDefault();
  clearInvalid($("logo-form"));
  const file = $("logo-file").files[0];
  if (!file) return invalid($("logo-file"), t("logo.needFile"));
  if (file.size > MAX_LOGO_BYTES) return invalid($("logo-file"), t("logo.tooLarge"));
  await api.api(`/admin/organizations/${logoOwner()}/logo`, {
    method: "PUT", body: { image: await fileBase64(file) },
  });
  $("logo-file").value = "";
  notify(t("logo.saved"));
  await loadLogo();
}

async function removeLogo() {
  if (!window.confirm(t("logo.confirmRemove"))) return;
  await api.api(`/admin/organizations/${logoOwner()}/logo`, { method: "DELETE" });
  notify(t("logo.removed"));
  await loadLogo();
}
