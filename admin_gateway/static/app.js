// The admin console: plain JavaScript modules, no build step, nothing loaded from elsewhere.
// Texts come from the catalogues (i18n.js), calls go through api.js, charts are SVG (charts.js).
"use strict";

import * as api from "./api.js";
import { barChart } from "./charts.js";
import * as catalogue from "./catalogue.js";
import * as controls from "./controls.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import * as keys from "./keys.js";
import * as sales from "./sales.js";
import {
  $, PagedList, button, cell, checkDays, clearInvalid, dayEnd, dayStart, explain,
  fillDelimiterPickers, guarded, invalid, jobError, notify, outcomeText, randomKey, showError,
} from "./ui.js";

const MAX_ADJUSTMENT = 1e12;  // the ledger's own bound on one adjustment
const STATUS_COLORS = { queued: "#757575", processing: "#1565c0", success: "#2e7d32",
                        failed: "#c62828" };
const state = {
  admin: false,
  organizationId: "",  // STAFF: its own
  organizations: [],  // ADMIN: every organisation, for the pickers and names
  controls: {},  // ADMIN: organisation id -> its alert, limits, spend and suspension
  settings: { largeAdjustment: "10000", renderModes: {} },
  screen: "overview",
};

const modeName = (mode) => i18n.known(`mode.${mode}`, mode);

// A row that added a grant says which kind and until when ("Grant: promotional, until …").
function logKind(log) {
  if (log.kind !== "CREDIT_LOG_KIND_ADJUST" || !log.grantKind
      || log.grantKind === "GRANT_KIND_UNSPECIFIED") return t(`kind.${log.kind}`);
  const kind = t(`grantKind.${log.grantKind}`);
  return log.grantExpiresAt ? t("kind.grant", { kind, until: i18n.moment(log.grantExpiresAt) })
    : t("kind.grantForever", { kind });
}

const organizationName = (id) =>
  (state.organizations.find((organization) => organization.id === String(id)) || {}).name
  || (id && id !== "0" ? `#${id}` : "");
const statusName = (status) => (status || "").replace("RENDER_STATUS_", "").toLowerCase();

// ---- organisations and pickers ----------------------------------------------------------

async function loadOrganizations() {
  if (!state.admin) return;
  const result = await api.api("/admin/organizations?pageSize=500");
  state.organizations = result.organizations || [];
  for (const select of document.querySelectorAll(".org-picker")) fillPicker(select);
}

// Refilling a picker keeps what the person chose: a picker that jumped to another
// organisation once made the next Apply adjust the wrong one.
function fillPicker(select) {
  const chosen = select.value;
  const options = [];
  if (select.dataset.all) {
    const all = document.createElement("option");
    all.value = select.dataset.all === "shared" ? "0" : "";
    all.textContent = { every: t("webhooks.everyOrg"), shared: t("catalogue.shared") }[
      select.dataset.all] || t("common.all");
    options.push(all);
  }
  for (const organization of state.organizations) {
    const option = document.createElement("option");
    option.value = organization.id;
    option.textContent = select.id === "adjust-org"
      ? `${organization.name} (${i18n.number(organization.balance)})` : organization.name;
    options.push(option);
  }
  select.replaceChildren(...options);
  if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
}

const lists = {
  organizations: new PagedList("organizations", {
    path: "/admin/organizations", items: "organizations", query: () => ({}),
    row: (organization) => {
      const row = document.createElement("tr");
      const available = Number(organization.balance || 0) - Number(organization.held || 0);
      [organization.name, i18n.number(organization.balance), i18n.number(organization.held),
       i18n.number(available), i18n.number(organization.expiringWithin30Days),
       i18n.moment(organization.createdAt)].forEach((value) => cell(row, value));
      const now = state.controls[organization.id];
      if (state.admin) {
        [controls.spendText(now), controls.controlsStatus(now)].forEach((value) => cell(row, value));
      }
      return row;
    },
  }),
  users: new PagedList("users", {
    path: "/admin/users", items: "users", query: () => ({}),
    row: (user) => {
      const row = document.createElement("tr");
      // The number the renders screen's user filter takes.
      [user.id, user.name, user.displayEmail || user.email, t(`role.${user.role}`), user.organizationName,
       user.active ? t("users.yes") : t("users.no"), i18n.moment(user.createdAt)]
        .forEach((value) => cell(row, value));
      if (state.admin) {
        const actions = cell(row, "");
        actions.className = "actions";
        actions.append(
          button(user.active ? t("users.deactivate") : t("users.activate"), () => toggleUser(user)),
          button(t("users.setPassword"), () => setPassword(user)));
      }
      return row;
    },
  }),
  renders: new PagedList("renders", {
    path: "/admin/renders", items: "renders",
    query: () => ({
      organizationId: state.admin ? $("filter-org").value : "",
      status: $("filter-status").value, mode: $("filter-mode").value,
      userId: $("filter-user").value.trim(),
      createdAfter: dayStart($("filter-from")), createdBefore: dayEnd($("filter-to")),
    }),
    row: (item) => {
      const job = item.render;
      const row = document.createElement("tr");
      const status = statusName(job.status);
      cell(row, i18n.moment(job.createdAt));
      if (state.admin) cell(row, item.organizationName || organizationName(job.organizationId));
      cell(row, item.userName || (job.userId && job.userId !== "0" ? `#${job.userId}` : t("common.none")));
      cell(row, item.carpetName || `#${job.carpetId}`);
      cell(row, modeName(job.mode));
      cell(row, t(`status.${status}`)).className = `status-${status}`;
      cell(row, i18n.number(job.creditsCharged));
      cell(row, jobError(job.errorText));
      const picture = cell(row, "");
      const open = button(t("renders.open"), () => showRender(item));
      open.setAttribute("aria-label", t("renders.detail", { id: job.id }));
      if (item.imagePath) {
        open.className = "thumbnail";
        api.blobUrl(`/admin/renders/${job.id}/thumbnail`).then((url) => {
          const image = document.createElement("img");
          image.alt = t("renders.detail", { id: job.id });
          image.src = url;
          open.replaceChildren(image);
        }).catch(() => { /* the button keeps its text */ });
      }
      picture.appendChild(open);
      return row;
    },
  }),
  "credit-logs": new PagedList("credit-logs", {
    path: "/admin/credit-logs", items: "logs",
    query: () => ({ organizationId: state.admin ? $("credits-org").value : "" }),
    row: (log) => {
      const row = document.createElement("tr");
      [i18n.moment(log.createdAt), logKind(log), i18n.signedNumber(log.delta),
       i18n.number(log.balanceAfter), i18n.known(`logReason.${log.reason}`, log.reason), log.actor]
        .forEach((value) => cell(row, value));
      return row;
    },
  }),
  audit: new PagedList("audit", {
    path: "/admin/audit", items: "auditLogs",
    query: () => ({
      actor: $("audit-actor").value.trim(), action: $("audit-action").value.trim(),
      organizationId: $("audit-org").value,
      createdAfter: dayStart($("audit-from")), createdBefore: dayEnd($("audit-to")),
    }),
    row: (entry) => {
      const row = document.createElement("tr");
      const action = entry.action.split("/").pop();
      [i18n.moment(entry.createdAt), entry.actor, i18n.known(`action.${action}`, action),
       organizationName(entry.organizationId), entry.target, outcomeText(entry.outcome), entry.peer]
        .forEach((value) => cell(row, value));
      return row;
    },
  }),
};

// ---- screens ------------------------------------------------------------------------------

const loaders = {
  overview: loadOverview,
  organizations: async () => { await controls.loadControls(); await lists.organizations.reload(); },
  users: () => lists.users.reload(),
  renders: () => lists.renders.reload(),
  catalogue: () => catalogue.load(),
  keys: keys.load,
  leads: () => sales.leads.reload(),
  analytics: sales.loadAnalytics,
  credits: () => lists["credit-logs"].reload(),
  audit: () => lists.audit.reload(),
  grants: controls.loadGrants,
  controls: controls.showControls,
  webhooks: controls.loadWebhooks,
};

async function show(screen) {
  state.screen = screen;
  controls.forgetSecret();
  keys.forgetKey();
  for (const section of document.querySelectorAll(".screen")) {
    section.hidden = section.id !== `screen-${screen}`;
  }
  for (const tab of document.querySelectorAll("#nav button")) {
    if (tab.dataset.screen === screen) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  await loaders[screen]();
}

async function loadOverview() {
  const organizationId = state.admin ? $("overview-org").value : "";
  const query = organizationId ? `?organizationId=${organizationId}` : "";
  const [overview, usage] = await Promise.all([
    api.api(`/admin/overview${query}`), api.api(`/admin/usage${query}`)]);
  $("card-users").textContent = i18n.number(overview.totalUsers);
  $("card-renders").textContent = i18n.number(overview.totalRenders);
  $("card-credit").textContent = i18n.number(overview.totalRemainingCredit);
  $("card-held").textContent = i18n.number(overview.totalHeld);
  $("card-orgs").textContent = i18n.number(overview.organizations);
  $("card-expiring").textContent = i18n.number(overview.totalExpiringWithin30Days);
  const low = overview.lowBalance || [];
  $("low-balance").hidden = !low.length;
  $("low-balance-list").replaceChildren(...low.map((entry) => {
    const item = document.createElement("li");
    item.textContent = t("overview.lowBalanceItem", {
      name: entry.organizationName, available: i18n.number(entry.available),
      threshold: i18n.number(entry.lowBalanceThreshold) });
    return item;
  }));
  const days = usage.days || [];
  const dates = days.map((day) => day.date);
  barChart($("chart-renders"), {
    days: dates, dayLabel: i18n.shortDay, stacked: true, title: t("overview.chart.renders"),
    format: i18n.number,
    series: Object.keys(STATUS_COLORS).map((status) => ({
      label: t(`status.${status}`), color: STATUS_COLORS[status],
      values: days.map((day) => Number((day.rendersByStatus || {})[status] || 0)) })),
  });
  // Spent and added on axes of their own: a 20,000 top-up once hid 39 spent on a shared one.
  for (const [box, field, color, label, title] of [
    ["chart-spent", "creditsSpent", "#c62828", "overview.chart.spent", "overview.chart.spentTitle"],
    ["chart-added", "creditsAdded", "#2e7d32", "overview.chart.added", "overview.chart.addedTitle"]]) {
    barChart($(box), {
      days: dates, dayLabel: i18n.shortDay, stacked: false, title: t(title), format: i18n.number,
      series: [{ label: t(label), color, values: days.map((day) => Number(day[field] || 0)) }],
    });
  }
  const renders = days.reduce((sum, day) => sum + Object.values(day.rendersByStatus || {})
    .reduce((total, count) => total + Number(count), 0), 0);
  const spent = days.reduce((sum, day) => sum + Number(day.creditsSpent || 0), 0);
  $("chart-summary").textContent = t("overview.chart.summary",
    { renders: i18n.number(renders), spent: i18n.number(spent) });
}

// ---- money: the credit adjustment ---------------------------------------------------------

async function applyAdjustment(event) {
  event.preventDefault();
  const form = $("adjust-form");
  clearInvalid(form);
  $("adjust-result").textContent = "";
  const picker = $("adjust-org");
  const organization = state.organizations.find((one) => one.id === picker.value);
  if (!organization) return invalid(picker, t("adjust.noOrg"));
  const raw = $("adjust-delta").value.trim().replace(/^\+/, "");
  if (!/^-?\d{1,13}$/.test(raw) || Number(raw) === 0) return invalid($("adjust-delta"), t("adjust.badDelta"));
  const delta = Number(raw);
  if (Math.abs(delta) > MAX_ADJUSTMENT) {
    return invalid($("adjust-delta"), t("adjust.tooLarge", { limit: i18n.number(MAX_ADJUSTMENT) }));
  }
  const reason = $("adjust-reason").value.trim();
  if (!reason) return invalid($("adjust-reason"), t("adjust.noReason"));
  const available = Number(organization.balance || 0) - Number(organization.held || 0);
  if (delta < 0 && available + delta < 0) {  // the server would refuse it: say so first
    return invalid($("adjust-delta"), t("adjust.notEnough", {
      name: organization.name, available: i18n.number(available) }));
  }
  const balance = Number(organization.balance || 0) + delta;
  const names = { name: organization.name, delta: i18n.signedNumber(delta), balance: i18n.number(balance) };
  // Money moves only after the person has read which organisation and what it will have.
  if (!window.confirm(t("adjust.confirm", names))) return;
  const limit = Number(state.settings.largeAdjustment);
  if (Math.abs(delta) > limit &&
      !window.confirm(t("adjust.confirmLarge", { ...names, limit: i18n.number(limit) }))) return;
  const result = await api.api("/admin/credits/adjust", { method: "POST", body: {
    organizationId: organization.id, delta: String(delta), reason, idempotencyKey: randomKey() } });
  $("adjust-delta").value = "";
  $("adjust-reason").value = "";
  const done = t("adjust.done", { name: organization.name, balance: i18n.number(result.balance.balance) });
  $("adjust-result").textContent = done;
  notify(done);
  await loadOrganizations();
  await loaders.organizations();  // the table's balance, spent and status as they are now
}

async function createOrganization(event) {
  event.preventDefault();
  const form = $("org-form");
  clearInvalid(form);
  const name = $("org-name").value.trim();
  if (!name) return invalid($("org-name"), t("orgs.noName"));
  const credits = $("org-credits").value.trim() || "0";
  if (!/^\d{1,13}$/.test(credits)) return invalid($("org-credits"), t("orgs.badCredits"));
  const created = await api.api("/admin/organizations", { method: "POST", body: {
    name, initialCredits: credits, idempotencyKey: randomKey() } });
  $("org-name").value = "";
  $("org-credits").value = "0";
  notify(t("orgs.created", { name: created.name }));
  await loadOrganizations();
  await loaders.organizations();
}

// ---- people ---------------------------------------------------------------------------------

async function createUser(event) {
  event.preventDefault();
  const form = $("user-form");
  clearInvalid(form);
  const name = $("user-name").value.trim();
  const email = $("user-email").value.trim();
  const password = $("user-password").value;
  if (!name) return invalid($("user-name"), t("users.noName"));
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) return invalid($("user-email"), t("users.badEmail"));
  if (!$("user-org").value) return invalid($("user-org"), t("adjust.noOrg"));
  if (password && password.length < 12) return invalid($("user-password"), t("users.shortPassword"));
  try {
    const created = await api.api("/admin/users", { method: "POST", body: {
      name, email, role: $("user-role").value, organizationId: $("user-org").value,
      ...(password ? { password } : {}), idempotencyKey: randomKey() } });
    $("user-name").value = $("user-email").value = $("user-password").value = "";
    notify(t("users.created", { email: created.displayEmail || created.email }));
    await lists.users.reload();
  } catch (error) {
    if (error.code === "WEAK_PASSWORD") return invalid($("user-password"), explain(error));
    if (error.code === "ALREADY_EXISTS") return invalid($("user-email"), explain(error));
    if (error.code === "INVALID_ARGUMENT" && /email/i.test(error.message)) {
      return invalid($("user-email"), t("users.badEmail"));
    }
    throw error;
  }
}

async function toggleUser(user) {
  const email = user.displayEmail || user.email;
  if (user.active && !window.confirm(t("users.confirmDeactivate", { email }))) return;
  await api.api(`/admin/users/${user.id}/${user.active ? "deactivate" : "activate"}`,
                { method: "POST", body: {} });
  notify(t(user.active ? "users.deactivated" : "users.activated", { email }));
  await lists.users.reload();
}

// The new password, typed into a password field (never shown) in a dialog; null: closed.
function askPassword(email) {
  const dialog = $("password-dialog");
  $("password-dialog-title").textContent = t("users.newPassword", { email });
  $("password-new").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    const finish = (value) => {
      if (dialog.open) dialog.close();
      resolve(value);
    };
    $("password-form").onsubmit = (event) => {
      event.preventDefault();
      finish($("password-new").value);
    };
    $("password-cancel").onclick = () => finish(null);
    dialog.oncancel = () => finish(null);  // Escape
  });
}

async function setPassword(user) {
  const email = user.displayEmail || user.email;
  const password = await askPassword(email);
  $("password-new").value = "";
  if (password === null) return;
  if (password.length < 12) return showError(t("users.shortPassword"));
  await api.api(`/admin/users/${user.id}/password`, { method: "POST", body: { password } });
  notify(t("users.passwordSet", { email }));
}

// ---- renders ------------------------------------------------------------------------------

async function picture(container, path, missing, outlines = []) {
  container.replaceChildren();
  try {
    const image = document.createElement("img");
    image.src = await api.blobUrl(path);
    image.alt = "";
    container.appendChild(image);
    if (outlines.length) container.appendChild(outlineSvg(outlines));
  } catch (error) {
    container.textContent = missing;
  }
}

// Outlines over a picture (points as fractions of it): the measured floor dashed, the carpets
// solid, each carpet numbered as in the detail's list.
function outlineSvg(outlines) {
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("viewBox", "0 0 100 100");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("outlines");
  for (const { points, kind } of outlines) {
    const polygon = document.createElementNS(svgNs, "polygon");
    polygon.setAttribute("points", points.map((point) => `${(point.x || 0) * 100},${(point.y || 0) * 100}`).join(" "));
    polygon.classList.add(kind);
    svg.appendChild(polygon);
  }
  return svg;
}

// A render on a measured floor: the floor's size, and each carpet's size and fit.
function floorFields(job) {
  if (!job.floor) return [];
  const cm = (value) => i18n.number(Math.round(Number(value || 0)));
  const line = job.floor.line;
  const fields = [[t("renders.floor"), line ? t("renders.floorLine", { length: cm(line.lengthCm) })
                                            : t("renders.floorSize", { width: cm(job.floor.widthCm), length: cm(job.floor.lengthCm) })]];
  (job.placedCarpets || []).forEach((carpet, index) => {
    const fit = carpet.fit;  // none on a floor measured by a line: it has no edges
    fields.push([t("renders.placedCarpet", { number: index + 1, width: cm(carpet.widthCm), length: cm(carpet.lengthCm) }),
                 !fit ? t("renders.fitUnmeasured")
                      : t(fit.insideFloor ? "renders.fitInside" : "renders.fitOutside", {
                          left: cm(fit.clearanceLeftCm), right: cm(fit.clearanceRightCm),
                          far: cm(fit.clearanceFarCm), near: cm(fit.clearanceNearCm) })]);
  });
  return fields;
}

// The four corners asked for (far-left, far-right, near-right, near-left) as percentages of
// the room picture, or the renderer's default placement.
function placementText(job) {
  const corners = (job.placement && job.placement.carpetCorners) || [];
  if (!corners.length) return t("renders.defaultPlacement");
  return corners.map((point) => `(${i18n.percent(point.x)}, ${i18n.percent(point.y)})`).join(" ");
}

function showRender(item) {
  const job = item.render;
  const dialog = $("render-detail");
  $("render-detail-title").textContent = t("renders.detail", { id: job.id });
  const status = statusName(job.status);
  const fields = [
    [t("common.status"), t(`status.${status}`)], [t("common.mode"), modeName(job.mode)],
    [t("common.organization"), item.organizationName || organizationName(job.organizationId)],
    [t("renders.carpet"), item.carpetName || `#${job.carpetId}`],
    [t("common.user"), item.userName || t("common.none")],
    [t("renders.credits"), i18n.number(job.creditsCharged)],
    [t("common.created"), i18n.moment(job.createdAt)], [t("renders.error"), jobError(job.errorText) || t("common.none")],
    [t("renders.renderer"), job.renderer ? i18n.known(`renderer.${job.renderer}`, job.renderer)
                                         : t("common.none")], [t("renders.placement"), placementText(job)],
    ...floorFields(job),
  ];
  $("render-detail-fields").replaceChildren(...fields.flatMap(([name, value]) => {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value;
    return [term, detail];
  }));
  const measure = job.floor && (job.floor.line ? [job.floor.line.start, job.floor.line.end] : job.floor.rectangle);
  const outlines = job.floor ? [{ points: measure || [], kind: "floor" },
    ...(job.placedCarpets || []).map((carpet) => ({ points: carpet.corners || [], kind: "carpet" }))] : [];
  picture($("render-room"), `/admin/renders/${job.id}/room`, t("renders.noRoom"), outlines);
  const noResult = t(status === "failed" ? "renders.failedNoResult" : "renders.noResult");
  if (item.imagePath) picture($("render-result"), item.imagePath, noResult);
  else $("render-result").textContent = noResult;
  const cancel = $("render-cancel");
  cancel.hidden = !(state.admin && status === "queued");
  cancel.dataset.id = job.id;
  dialog.showModal();
  guarded(() => sales.showShares(job.id));
}

async function cancelRender() {
  const id = $("render-cancel").dataset.id;
  if (!window.confirm(t("renders.confirmCancel", { id }))) return;
  await api.api(`/admin/renders/${id}/cancel`, { method: "POST", body: {} });
  $("render-detail").close();
  notify(t("renders.canceled", { id }));
  await lists.renders.reload();
}

// ---- audit --------------------------------------------------------------------------------

async function verifyChain() {
  $("audit-check").textContent = t("common.loading");
  const check = await api.api("/admin/audit/verify");
  $("audit-check").textContent = check.ok
    ? t("audit.ok", { rows: i18n.number(check.rows) })
    : t("audit.broken", { problems: (check.problems || []).join("; ") });
  $("audit-check").className = check.ok ? "check-ok" : "check-broken";
}

// ---- signing in and out -------------------------------------------------------------------

async function enter() {
  const user = api.signedInUser();
  state.admin = user ? user.role === "ROLE_ADMIN" : await probeAdmin();
  state.organizationId = user ? user.organizationId : "";
  document.body.classList.toggle("staff", !state.admin);
  for (const element of document.querySelectorAll(".admin-only")) element.hidden = !state.admin;
  state.settings = await api.api("/admin/console-settings");
  const modes = $("filter-mode");
  modes.replaceChildren(modes.options[0],
    ...Object.keys(state.settings.renderModes || {}).map((mode) => new Option(modeName(mode), mode)));
  await loadOrganizations();
  showWhoami();
  $("sign-in-form").hidden = true;
  $("nav").hidden = false;
  $("dashboard").hidden = false;
  $("sign-out").hidden = false;
  showError("");
  await show("overview");
}

// "Signed in as …", in the language of the moment (called again when it changes).
function showWhoami() {
  const user = api.signedInUser();
  const names = { name: user && (user.displayEmail || user.email),
                  organization: user && user.organizationName };
  // A shop's staff see whose console this is; an admin's organisation is the platform's.
  $("whoami").textContent = !user ? ""
    : t(state.admin || !names.organization ? "signin.as" : "signin.asOf", names);
  $("whoami").hidden = !user;
}

async function probeAdmin() {
  try {
    await api.api("/admin/organizations?pageSize=1");
    return true;
  } catch (error) {
    if (error.status === 403) return false;
    throw error;
  }
}

function leave(message) {
  $("dashboard").hidden = true;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("whoami").hidden = true;
  $("sign-in-form").hidden = false;
  showError(message || "");
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  const email = $("email").value.trim();
  const password = $("password").value;
  $("token").value = "";
  $("password").value = "";
  try {
    if (token) api.useAutomationToken(token);
    else if (email && password) await api.signInWithPassword(email, password);
    else return showError(t("signin.missing"));
    await enter();
  } catch (error) {
    api.forgetCredential();
    leave(error.status === 401 && !token ? t("signin.wrong") : explain(error));
  }
}

// ---- wiring ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  await i18n.setLanguage(i18n.preferredLanguage());
  for (const choice of document.querySelectorAll(".lang")) {
    choice.setAttribute("aria-pressed", String(choice.dataset.lang === i18n.language()));
    choice.addEventListener("click", () => guarded(async () => {
      await i18n.setLanguage(choice.dataset.lang);
      for (const other of document.querySelectorAll(".lang")) {
        other.setAttribute("aria-pressed", String(other.dataset.lang === i18n.language()));
      }
      controls.translateChoices();
      fillDelimiterPickers();
      if (!$("dashboard").hidden) {
        showWhoami();
        for (const select of document.querySelectorAll(".org-picker")) fillPicker(select);
        await show(state.screen);
      }
    }));
  }
  controls.setUp({ state, organizationName, reloadOrganizations: loadOrganizations });
  catalogue.setUp({ state, organizationName });
  lists.carpets = catalogue.list();
  keys.setUp({ state, organizationName });
  sales.setUp({ state, organizationName });
  lists.leads = sales.leads;
  $("key-filter-org").addEventListener("change", () => guarded(keys.load));
  fillDelimiterPickers();
  api.whenSessionEnds(() => leave(t("signin.ended")));
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", async () => {
    await api.signOut();
    leave("");
  });
  for (const tab of document.querySelectorAll("#nav button")) {
    tab.addEventListener("click", () => guarded(() => show(tab.dataset.screen)));
  }
  $("overview-org").addEventListener("change", () => guarded(loadOverview));
  $("credits-org").addEventListener("change", () => guarded(() => lists["credit-logs"].reload()));
  $("adjust-form").addEventListener("submit", (event) => guarded(() => applyAdjustment(event)));
  $("org-form").addEventListener("submit", (event) => guarded(() => createOrganization(event)));
  $("user-form").addEventListener("submit", (event) => guarded(() => createUser(event)));
  $("render-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    if (checkDays($("render-filters"))) guarded(() => lists.renders.reload());
  });
  $("audit-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    if (checkDays($("audit-filters"))) guarded(() => lists.audit.reload());
  });
  $("audit-verify").addEventListener("click", () => guarded(verifyChain));
  $("render-close").addEventListener("click", () => $("render-detail").close());
  $("render-cancel").addEventListener("click", () => guarded(cancelRender));
  for (const csv of document.querySelectorAll(".csv")) {
    csv.addEventListener("click", () => guarded(() => lists[csv.dataset.csv].downloadCsv()));
  }
  if (api.hasCredential()) guarded(enter);
});
