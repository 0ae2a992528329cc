// The admin jobs beyond the adjustment: grants (what makes up a balance, and giving credit with
// a kind, an expiry and a priority), an organisation's low-balance alert, spend limits and
// suspension, and webhooks with their delivery log. Changes are ADMIN's; STAFF sees its own
// organisation's grants. Every change asks first, naming the organisation and what changes.
"use strict";

import * as api from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import {
  $, PagedList, button, cell, checkDays, clearInvalid, dayEnd, guarded, invalid, labelCells, notify,
  randomKey,
} from "./ui.js";

const MAX_AMOUNT = 1e12;  // the ledger's own bound on one change
const MAX_PRIORITY = 2 ** 31 - 1;
const WEBHOOK_EVENTS = ["render.succeeded", "render.failed", "credit.adjusted", "credit.low_balance",
                        "credit.spend_limit_reached", "organization.suspended", "lead.created"];
const DELIVERY_STATES = ["pending", "delivered", "failed", "canceled"];

let shared;  // { state, organizationName, reloadOrganizations } from app.js

const none = () => t("common.none");
const amountOrNone = (value) => (Number(value || 0) ? i18n.number(value) : none());
const organizationOf = (id) => shared.state.organizations.find((one) => one.id === String(id));

// A whole number of credits typed into `field`, at least `least`; null (field marked) when not.
function credits(field, least, message) {
  const raw = field.value.trim() || "0";
  if (!/^\d{1,13}$/.test(raw) || Number(raw) < least || Number(raw) > MAX_AMOUNT) {
    invalid(field, message);
    return null;
  }
  return Number(raw);
}

// ---- grants -------------------------------------------------------------------------------

export async function loadGrants() {
  const organizationId = shared.state.admin ? $("grants-org").value : "";  // STAFF: its own
  const body = $("grants").querySelector("tbody");
  body.replaceChildren();
  if (shared.state.admin && !organizationId) return;
  const balance = await api.api(`/admin/balance?organizationId=${organizationId || 0}`);
  $("grants-balance").textContent = t("grants.balance", {
    balance: i18n.number(balance.balance), held: i18n.number(balance.held),
    available: i18n.number(balance.available) });
  const grants = balance.grants || [];
  if (!grants.length) cell(body.insertRow(), t("common.empty")).colSpan = 8;
  for (const grant of grants) {
    const row = body.insertRow();
    [t(`grantKind.${grant.kind}`), i18n.number(grant.amount), i18n.number(grant.remaining),
     i18n.number(grant.held), i18n.number(grant.priority), i18n.moment(grant.effectiveAt),
     grant.expiresAt ? i18n.moment(grant.expiresAt) : t("grants.never"),
     i18n.known(`logReason.${grant.reason}`, grant.reason)].forEach((value) => cell(row, value));
  }
  labelCells($("grants"));
}

async function giveCredit(event) {
  event.preventDefault();
  const form = $("grant-form");
  if (!checkDays(form)) return;
  const organization = organizationOf($("grants-org").value);
  if (!organization) return invalid($("grants-org"), t("adjust.noOrg"));
  const amount = credits($("grant-amount"), 1, t("grants.badAmount"));
  if (amount === null) return;
  const expires = $("grant-expires");
  const expiresAt = dayEnd(expires);  // spendable through the whole day chosen
  if (expiresAt && new Date(expiresAt) <= new Date()) return invalid(expires, t("grants.pastExpiry"));
  const priority = $("grant-priority").value.trim() || "0";
  if (!/^-?\d{1,10}$/.test(priority) || Math.abs(Number(priority)) > MAX_PRIORITY) {
    return invalid($("grant-priority"), t("grants.badPriority"));
  }
  const reason = $("grant-reason").value.trim();
  if (!reason) return invalid($("grant-reason"), t("adjust.noReason"));
  const kind = $("grant-kind").value;
  const names = {
    name: organization.name, amount: i18n.number(amount), kind: t(`grantKind.${kind}`),
    until: expiresAt ? i18n.day(i18n.parseDay(expires.value)) : t("grants.never"),
    balance: i18n.number(Number(organization.balance || 0) + amount) };
  if (!window.confirm(t("grants.confirm", names))) return;
  const result = await api.api("/admin/credits/grants", { method: "POST", body: {
    organizationId: organization.id, amount: String(amount), kind, priority: Number(priority),
    reason, idempotencyKey: randomKey(), ...(expiresAt ? { expiresAt } : {}) } });
  for (const id of ["grant-amount", "grant-expires", "grant-reason"]) $(id).value = "";
  $("grant-priority").value = "0";
  notify(t("grants.done", { ...names, balance: i18n.number(result.balance.balance) }));
  await shared.reloadOrganizations();
  await loadGrants();
}

// ---- alerts, limits, suspension -----------------------------------------------------------

export async function loadControls() {
  if (!shared.state.admin) return;
  const result = await api.api("/admin/organizations/controls");
  shared.state.controls = Object.fromEntries(
    (result.organizations || []).map((controls) => [controls.organizationId, controls]));
}

// The organisation's state in words: suspended (why), low on credit, or active.
export function controlsStatus(controls) {
  if (!controls) return "";
  if (controls.suspended) return t("orgs.suspended", { reason: controls.suspensionReason });
  return controls.lowBalance ? t("orgs.lowBalance") : t("orgs.active");
}

// Spending this month against the monthly limit.
export function spendText(controls) {
  if (!controls) return "";
  const spent = i18n.number(controls.spentThisMonth);
  return Number(controls.monthlyCredits) ? `${spent} / ${i18n.number(controls.monthlyCredits)}` : spent;
}

export async function showControls() {
  await loadControls();
  const body = $("controls").querySelector("tbody");
  body.replaceChildren();
  for (const controls of Object.values(shared.state.controls)) {
    const row = body.insertRow();
    [controls.organizationName, i18n.number(controls.available),
     amountOrNone(controls.lowBalanceThreshold), spendText(controls),
     amountOrNone(controls.userDailyCredits), controlsStatus(controls)]
      .forEach((value) => cell(row, value));
    const actions = cell(row, "");
    actions.className = "actions";
    const change = button(t("controls.changeButton"), () => chooseControls(controls.organizationId));
    change.setAttribute("aria-label", t("controls.changeFor", { name: controls.organizationName }));
    actions.appendChild(change);
  }
  labelCells($("controls"));
  if (!$("controls-org").value && body.rows.length) $("controls-org").selectedIndex = 0;
  fillControlsForm();
}

function chooseControls(organizationId) {
  $("controls-org").value = organizationId;
  fillControlsForm();
  $("controls-threshold").focus();
}

// The form shows what the chosen organisation has now.
function fillControlsForm() {
  clearInvalid($("controls-form"));
  const controls = shared.state.controls[$("controls-org").value] || {};
  $("controls-threshold").value = controls.lowBalanceThreshold || "0";
  $("controls-monthly").value = controls.monthlyCredits || "0";
  $("controls-daily").value = controls.userDailyCredits || "0";
  const suspended = Boolean(controls.suspended);
  $("suspension-state").textContent = controls.organizationId ? controlsStatus(controls) : "";
  $("suspend-reason-label").hidden = suspended;
  $("suspend").hidden = suspended;
  $("resume").hidden = !suspended;
  $("suspend-reason").value = "";
}

// The organisation the controls forms act on and its controls now; null, with the picker
// marked, when none is chosen.
function chosenOrganization(form) {
  clearInvalid(form);
  const id = $("controls-org").value;
  const controls = shared.state.controls[id];
  if (!controls) {
    invalid($("controls-org"), t("adjust.noOrg"));
    return null;
  }
  return { id, controls, name: controls.organizationName };
}

async function saveControls(event) {
  event.preventDefault();
  const chosen = chosenOrganization($("controls-form"));
  if (!chosen) return;
  const { id, controls: before } = chosen;
  const message = t("controls.badNumber");
  const threshold = credits($("controls-threshold"), 0, message);
  if (threshold === null) return;
  const monthly = credits($("controls-monthly"), 0, message);
  if (monthly === null) return;
  const daily = credits($("controls-daily"), 0, message);
  if (daily === null) return;
  const alertChanged = threshold !== Number(before.lowBalanceThreshold || 0);
  const limitsChanged = monthly !== Number(before.monthlyCredits || 0)
    || daily !== Number(before.userDailyCredits || 0);
  if (!alertChanged && !limitsChanged) return notify(t("controls.unchanged"));
  const names = { name: before.organizationName, threshold: amountOrNone(threshold),
                  monthly: amountOrNone(monthly), daily: amountOrNone(daily) };
  if (!window.confirm(t("controls.confirm", names))) return;
  if (alertChanged) {
    await api.api(`/admin/organizations/${id}/alerts`, { method: "PUT", body: {
      lowBalanceThreshold: String(threshold), idempotencyKey: randomKey() } });
  }
  if (limitsChanged) {
    await api.api(`/admin/organizations/${id}/limits`, { method: "PUT", body: {
      monthlyCredits: String(monthly), userDailyCredits: String(daily),
      idempotencyKey: randomKey() } });
  }
  notify(t("controls.saved", names));
  await showControls();
}

async function suspend(event) {
  event.preventDefault();
  const chosen = chosenOrganization($("suspension-form"));
  if (!chosen) return;
  const { id, name } = chosen;
  const reason = $("suspend-reason").value.trim();
  if (!reason) return invalid($("suspend-reason"), t("controls.noReason"));
  if (!window.confirm(t("controls.confirmSuspend", { name, reason }))) return;
  await api.api(`/admin/organizations/${id}/suspend`, { method: "POST", body: {
    reason, idempotencyKey: randomKey() } });
  notify(t("controls.suspended", { name }));
  await showControls();
}

async function resume() {
  const chosen = chosenOrganization($("suspension-form"));
  if (!chosen) return;
  const { id, name } = chosen;
  if (!window.confirm(t("controls.confirmResume", { name }))) return;
  await api.api(`/admin/organizations/${id}/resume`, { method: "POST", body: {
    idempotencyKey: randomKey() } });
  notify(t("controls.resumed", { name }));
  await showControls();
}

// ---- webhooks -----------------------------------------------------------------------------

const deliveries = new PagedList("deliveries", {
  path: "", items: "deliveries",
  query: () => ({ state: $("delivery-state").value }),
  row: (delivery) => {
    const row = document.createElement("tr");
    [i18n.moment(delivery.createdAt), t(`event.${delivery.eventType}`),
     t(`deliveryState.${delivery.state}`), attemptsText(delivery),
     delivery.state === "pending" ? i18n.moment(delivery.nextAttemptAt) : ""]
      .forEach((value) => cell(row, value));
    const actions = cell(row, "");
    actions.className = "actions";
    if (delivery.state === "failed" || delivery.state === "pending") {
      actions.appendChild(button(t("webhooks.retry"), () => retryDelivery(delivery)));
    }
    return row;
  },
});

// "3 · last: HTTP 500 (120 ms)" or "… last: connection refused".
function attemptsText(delivery) {
  const attempts = delivery.attemptLog || [];
  const count = i18n.number(delivery.attempts);
  if (!attempts.length) return count;
  const last = attempts[attempts.length - 1];
  const answer = last.statusCode
    ? t("webhooks.lastStatus", { status: last.statusCode, ms: i18n.number(last.latencyMs) })
    : t("webhooks.lastError", { error: last.error || none() });
  return `${count} · ${answer}`;
}

export async function loadWebhooks() {
  const result = await api.api("/admin/webhooks");
  const body = $("webhooks").querySelector("tbody");
  body.replaceChildren();
  const endpoints = result.endpoints || [];
  if (!endpoints.length) cell(body.insertRow(), t("common.empty")).colSpan = 5;
  for (const endpoint of endpoints) {
    const row = body.insertRow();
    [endpoint.url,
     Number(endpoint.organizationId || 0) ? shared.organizationName(endpoint.organizationId)
                                          : t("webhooks.everyOrg"),
     (endpoint.events || []).map((type) => t(`event.${type}`)).join(", "),
     `${i18n.moment(endpoint.createdAt)} · ${endpoint.createdBy}`]
      .forEach((value) => cell(row, value));
    const actions = cell(row, "");
    actions.className = "actions";
    actions.append(button(t("webhooks.deliveries"), () => showDeliveries(endpoint)),
                   button(t("webhooks.remove"), () => removeEndpoint(endpoint)));
  }
  labelCells($("webhooks"));
}

async function showDeliveries(endpoint) {
  deliveries.path = `/admin/webhooks/${endpoint.id}/deliveries`;
  $("deliveries-title").textContent = t("webhooks.deliveriesTo", { url: endpoint.url });
  $("deliveries-box").hidden = false;
  await deliveries.reload();
  $("deliveries-title").scrollIntoView();
}

async function retryDelivery(delivery) {
  await api.api(`/admin/webhooks/deliveries/${delivery.id}/retry`, { method: "POST", body: {} });
  notify(t("webhooks.retried", { event: t(`event.${delivery.eventType}`) }));
  await deliveries.reload();
}

async function removeEndpoint(endpoint) {
  if (!window.confirm(t("webhooks.confirmRemove", { url: endpoint.url }))) return;
  await api.api(`/admin/webhooks/${endpoint.id}`, { method: "DELETE" });
  notify(t("webhooks.removed", { url: endpoint.url }));
  $("deliveries-box").hidden = true;
  await loadWebhooks();
}

async function addEndpoint(event) {
  event.preventDefault();
  clearInvalid($("webhook-form"));
  $("webhook-secret-box").hidden = true;
  const url = $("webhook-url").value.trim();
  if (!/^https?:\/\/[^\s/]+/.test(url)) return invalid($("webhook-url"), t("webhooks.badUrl"));
  const events = [...$("webhook-events").querySelectorAll("input:checked")].map((box) => box.value);
  if (!events.length) return invalid($("webhook-events").querySelector("input"), t("webhooks.noEvents"));
  const created = await api.api("/admin/webhooks", { method: "POST", body: {
    url, events, organizationId: $("webhook-org").value || "0", idempotencyKey: randomKey() } });
  $("webhook-url").value = "";
  $("webhook-secret").textContent = created.secret;
  $("webhook-secret-box").hidden = false;
  notify(t("webhooks.added", { url }));
  await loadWebhooks();
}

// Called when the screen changes: a signing secret is shown once, not kept on the page.
export function forgetSecret() {
  $("webhook-secret").textContent = "";
  $("webhook-secret-box").hidden = true;
}

// The event boxes and state options carry translated words: rebuilt when the language changes.
export function translateChoices() {
  const checked = new Set([...$("webhook-events").querySelectorAll("input:checked")].map((box) => box.value));
  const legend = $("webhook-events").querySelector("legend");
  $("webhook-events").replaceChildren(legend, ...WEBHOOK_EVENTS.map((type) => {
    const label = document.createElement("label");
    label.className = "choice";
    const box = document.createElement("input");
    Object.assign(box, { type: "checkbox", value: type, checked: checked.has(type) });
    label.append(box, t(`event.${type}`));
    return label;
  }));
  const states = $("delivery-state");
  const chosen = states.value;
  states.replaceChildren(states.options[0],
    ...DELIVERY_STATES.map((state) => new Option(t(`deliveryState.${state}`), state)));
  states.value = chosen;
}

export function setUp(context) {
  shared = context;
  translateChoices();
  $("grants-org").addEventListener("change", () => guarded(loadGrants));
  $("grant-form").addEventListener("submit", (event) => guarded(() => giveCredit(event)));
  $("controls-org").addEventListener("change", fillControlsForm);
  $("controls-form").addEventListener("submit", (event) => guarded(() => saveControls(event)));
  $("suspension-form").addEventListener("submit", (event) => guarded(() => suspend(event)));
  $("resume").addEventListener("click", () => guarded(resume));
  $("webhook-form").addEventListener("submit", (event) => guarded(() => addEndpoint(event)));
  $("delivery-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(() => deliveries.reload());
  });
}
