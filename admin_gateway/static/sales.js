// The Leads and Analytics screens (docs/shares-and-leads.md): shoppers' quote requests with
// their status and the shop's note, a person's data exported or erased on request, and the
// widget's funnel per day and per carpet. ADMIN sees
// every organisation's; STAFF their own.
"use strict";

import * as api from "./api.js";
import { barChart } from "./charts.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import {
  $, PagedList, button, cell, clearInvalid, csvDelimiter, guarded, invalid, labelCells, notify,
} from "./ui.js";

const LEAD_STATUSES = ["new", "contacted", "won", "lost"];
const STEPS = ["opened", "photoAdded", "rendered", "shared", "leads", "conversions"];
const STEP_COLORS = { opened: "#90a4ae", photoAdded: "#64b5f6", rendered: "#1565c0",
                      shared: "#8e24aa", leads: "#2e7d32", conversions: "#ef6c00" };

let shared;  // { state, organizationName } from app.js

export function setUp(from) {
  shared = from;
  $("lead-filters").addEventListener("change", () => guarded(() => leads.reload()));
  $("analytics-days").addEventListener("change", () => guarded(loadAnalytics));
  $("analytics-org").addEventListener("change", () => guarded(loadAnalytics));
  $("analytics-csv").addEventListener("click", () => guarded(downloadAnalytics));
  $("privacy-form").addEventListener("submit", (event) => guarded(() => exportPerson(event)));
  $("privacy-erase").addEventListener("click", () => guarded(erasePerson));
}

export const leads = {
  list: null,
  reload() {
    this.list ||= new PagedList("leads", {
      path: "/admin/leads", items: "leads",
      query: () => ({ organizationId: shared.state.admin ? $("lead-filter-org").value : "",
                      status: $("lead-filter-status").value }),
      row: leadRow,
    });
    return this.list.reload();
  },
  downloadCsv() { return this.list.downloadCsv(); },
};

function leadRow(lead) {
  const row = document.createElement("tr");
  const contact = [lead.phone, lead.email].filter(Boolean).join(" · ");
  [i18n.moment(lead.createdAt), lead.name, contact, lead.message || "—",
   shared.organizationName(lead.organizationId), lead.renderId].forEach((value) => cell(row, value));
  const status = document.createElement("select");
  status.setAttribute("aria-label", t("leads.statusOf", { name: lead.name }));
  status.append(...LEAD_STATUSES.map((name) => new Option(t(`leads.status.${name}`), name)));
  status.value = lead.status;
  status.addEventListener("change", () => guarded(() => updateLead(lead, { status: status.value })));
  cell(row, "").append(status);
  const note = cell(row, lead.note || "");
  note.className = "note";
  const edit = button(t("leads.editNote"), () => editNote(lead));
  edit.setAttribute("aria-label", t("leads.editNoteOf", { name: lead.name }));
  cell(row, "").append(edit);
  return row;
}

async function updateLead(lead, change) {
  await api.api(`/admin/leads/${lead.id}`, { method: "PATCH", body: change });
  notify(t("leads.saved", { name: lead.name }));
  await leads.reload();
}

async function editNote(lead) {
  const note = window.prompt(t("leads.notePrompt", { name: lead.name }), lead.note || "");
  if (note === null) return;
  await updateLead(lead, { note: note.slice(0, 2000) });
}

// ---- a person's data on request (KVKK): exported as a file, or erased --------------------------

function person() {
  clearInvalid($("privacy-form"));
  const contact = $("privacy-contact").value.trim();
  if (!contact) {
    invalid($("privacy-contact"), t("privacy.needContact"));
    return null;
  }
  return contact.includes("@") ? { email: contact } : { phone: contact };
}

async function exportPerson(event) {
  event.preventDefault();
  const asked = person();
  if (!asked) return;
  const held = await api.api("/admin/privacy/export", { method: "POST", body: asked });
  api.saveBlob(new Blob([JSON.stringify(held, null, 2)], { type: "application/json" }),
               "personal-data.json");
  notify(t("privacy.exported", { count: i18n.number((held.leads || []).length) }));
}

async function erasePerson() {
  const asked = person();
  if (!asked || !window.confirm(t("privacy.confirmErase", { contact: asked.email || asked.phone }))) {
    return;
  }
  const erased = await api.api("/admin/privacy/erase", { method: "POST", body: asked });
  $("privacy-contact").value = "";
  notify(t("privacy.erased", { leads: i18n.number(erased.leadsErased || 0),
                               renders: i18n.number(erased.rendersErased || 0) }));
  await leads.reload();
}

// A render's share links in its detail (docs/shares-and-leads.md): each can be withdrawn.
export async function showShares(renderId) {
  const box = $("render-shares");
  box.replaceChildren();
  const answer = await api.api(`/admin/shares?renderId=${renderId}`);
  const links = answer.shares || [];
  if (!links.length) return;
  const list = document.createElement("ul");
  for (const link of links) {
    const item = document.createElement("li");
    item.textContent = link.revokedAt
      ? t("shares.revoked", { created: i18n.moment(link.createdAt), revoked: i18n.moment(link.revokedAt) })
      : t("shares.active", { created: i18n.moment(link.createdAt), expires: i18n.moment(link.expiresAt) });
    if (!link.revokedAt) {
      item.append(" ", button(t("shares.revoke"), async () => {
        if (!window.confirm(t("shares.confirmRevoke"))) return;
        await api.api(`/admin/shares/${link.id}/revoke`, { method: "POST", body: {} });
        notify(t("shares.revokedNotice"));
        await showShares(renderId);
      }));
    }
    list.append(item);
  }
  const heading = document.createElement("h4");
  heading.textContent = t("shares.title");
  box.append(heading, list);
}

function analyticsQuery() {
  const params = new URLSearchParams({ days: $("analytics-days").value });
  const organizationId = shared.state.admin ? $("analytics-org").value : "";
  if (organizationId) params.set("organizationId", organizationId);
  return params;
}

export async function loadAnalytics() {
  const funnel = await api.api(`/admin/analytics?${analyticsQuery()}`);
  const total = funnel.total || {};
  $("funnel-steps").replaceChildren(...STEPS.map((step) => {
    const item = document.createElement("li");
    const count = Number(total[step] || 0);
    const opened = Number(total.opened || 0);
    item.textContent = `${t(`analytics.${step}`)}: ${i18n.number(count)}`
      + (step !== "opened" && opened ? ` (${i18n.percent(count / opened)})` : "");
    return item;
  }));
  const days = (funnel.days || []).map((day) => day.date);
  barChart($("chart-funnel"), {
    days, dayLabel: i18n.shortDay, stacked: false, title: t("analytics.chartTitle"),
    format: i18n.number,
    series: ["opened", "rendered", "leads"].map((step) => ({
      label: t(`analytics.${step}`), color: STEP_COLORS[step],
      values: (funnel.days || []).map((day) => Number((day.counts || {})[step] || 0)),
    })),
  });
  const rows = (funnel.carpets || []).map(carpetRow);
  if (!rows.length) {
    const empty = document.createElement("tr");
    cell(empty, t("common.empty")).colSpan = $("funnel-carpets").querySelectorAll("th").length;
    rows.push(empty);
  }
  $("funnel-carpets").querySelector("tbody").replaceChildren(...rows);
  labelCells($("funnel-carpets"));
}

function carpetRow(carpet) {
  const row = document.createElement("tr");
  const counts = carpet.counts || {};
  const rendered = Number(counts.rendered || 0);
  const requests = Number(counts.leads || 0);
  [carpet.carpetName || `#${carpet.carpetId}`,
   ...["opened", "rendered", "shared", "leads", "conversions"].map(
     (step) => i18n.number(counts[step] || 0)),
   rendered ? i18n.percent(requests / rendered) : "—"].forEach((value) => cell(row, value));
  return row;
}

async function downloadAnalytics() {
  const params = analyticsQuery();
  params.set("lang", i18n.language());
  params.set("delimiter", csvDelimiter());
  await api.download(`/admin/analytics.csv?${params}`, "analytics.csv");
}
