// The admin page: plain JavaScript, no build step. A person signs in with email and password
// (POST /auth/login): the tokens live in this page's memory only (a reload signs out) and the
// access token is renewed before it expires. An automation token lives in sessionStorage (this
// tab only). Credentials travel in a header, never in a URL.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "carpet-admin-token";
const pages = { users: [""], renders: [""] };  // page-token stacks: index 0 is the newest page
const session = { access: "", refresh: "", timer: 0 };  // a signed-in person's tokens

function credentialHeaders() {
  if (session.access) return { "Authorization": "Bearer " + session.access };
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  // A JWT has three dot-separated parts; anything else is an admin token.
  return token.split(".").length === 3
    ? { "Authorization": "Bearer " + token }
    : { "x-admin-token": token };
}

function explain(status, body, retryAfter) {
  if (status === 401) return "Sign-in failed: the token was not accepted.";
  if (status === 403) return "Your role may not do this.";
  if (status === 429) return `Too many requests: try again in ${retryAfter || "a few"} seconds.`;
  if (body && body.code === "INSUFFICIENT_CREDITS") return "Not enough credit for this change.";
  return (body && body.message) ? body.message : `Request failed (HTTP ${status}).`;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "Content-Type": "application/json", ...credentialHeaders(), ...(options.headers || {}) },
  });
  const body = (response.headers.get("Content-Type") || "").startsWith("application/json")
    ? await response.json() : null;
  if (!response.ok) {
    const error = new Error(explain(response.status, body, response.headers.get("Retry-After")));
    error.status = response.status;
    throw error;
  }
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

async function loadOverview() {
  const overview = await api("/admin/overview");
  $("card-users").textContent = overview.totalUsers || "0";
  $("card-renders").textContent = overview.totalRenders || "0";
  $("card-credit").textContent = overview.totalRemainingCredit || "0";
  $("card-held").textContent = overview.totalHeld || "0";
}

async function loadOrganizations() {
  const result = await api("/admin/organizations?pageSize=500");
  const select = $("adjust-org");
  // Reloading the list after an adjustment must keep the admin's choice: a picker that jumped
  // to another organisation once made the next Apply adjust the wrong one.
  const chosen = select.value;
  select.replaceChildren();
  for (const organization of result.organizations || []) {
    const option = document.createElement("option");
    option.value = organization.id;
    option.dataset.name = organization.name;
    option.textContent = `${organization.name} (${organization.balance || 0})`;
    select.appendChild(option);
  }
  if (chosen && [...select.options].some((option) => option.value === chosen)) {
    select.value = chosen;
  }
}

async function loadUsers() {
  const token = pages.users[pages.users.length - 1];
  const result = await api("/admin/users?pageSize=20&pageToken=" + encodeURIComponent(token));
  const body = $("users").querySelector("tbody");
  body.replaceChildren();
  for (const user of result.users || []) {
    const row = document.createElement("tr");
    [user.name, user.email, (user.role || "").replace("ROLE_", ""), user.organizationName,
     user.credit || "0"].forEach((value) => cell(row, value));
    body.appendChild(row);
  }
  $("users-next").disabled = !result.nextPageToken;
  $("users-next").dataset.token = result.nextPageToken || "";
  $("users-prev").disabled = pages.users.length === 1;
}

async function thumbnail(td, path) {
  try {
    const response = await fetch(path, { headers: credentialHeaders() });
    if (!response.ok) return;
    const image = document.createElement("img");
    image.alt = "render";
    image.src = URL.createObjectURL(await response.blob());
    td.appendChild(image);
  } catch (error) { /* a missing thumbnail leaves an empty cell */ }
}

async function loadRenders() {
  const token = pages.renders[pages.renders.length - 1];
  const result = await api("/admin/renders?pageSize=20&pageToken=" + encodeURIComponent(token));
  const body = $("renders").querySelector("tbody");
  body.replaceChildren();
  for (const row of result.renders || []) {
    const job = row.render;
    const tr = document.createElement("tr");
    const status = (job.status || "").replace("RENDER_STATUS_", "").toLowerCase();
    cell(tr, new Date(job.createdAt).toLocaleString());
    cell(tr, row.userName || (job.userId ? `#${job.userId}` : "—"));
    cell(tr, job.mode);
    cell(tr, status).className = "status-" + status;
    cell(tr, job.errorText || "");
    const picture = cell(tr, "");
    if (row.imagePath) thumbnail(picture, row.imagePath);
    body.appendChild(tr);
  }
  $("renders-next").disabled = !result.nextPageToken;
  $("renders-next").dataset.token = result.nextPageToken || "";
  $("renders-prev").disabled = pages.renders.length === 1;
}

async function refreshAsPermitted() {
  // STAFF may read their organisation but not list organisations or move credit.
  try {
    await loadOrganizations();
    $("adjust-section").hidden = false;
  } catch (error) {
    if (error.status !== 403) throw error;
    $("adjust-section").hidden = true;
  }
  await Promise.all([loadOverview(), loadUsers(), loadRenders()]);
}

async function showDashboard() {
  await refreshAsPermitted();
  showError("");
  $("dashboard").hidden = false;
  $("sign-in-form").hidden = true;
  $("sign-out").hidden = false;
}

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await showDashboard();
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("dashboard").hidden = true;
    showError(error.message);
  }
}

async function authCall(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const result = await response.json();
  if (!response.ok) {
    const message = response.status === 401 && path === "/auth/login"
      ? "Email or password is wrong."
      : explain(response.status, result, response.headers.get("Retry-After"));
    throw Object.assign(new Error(message), { status: response.status });
  }
  return result;
}

function keepSession(result) {
  session.access = result.accessToken;
  session.refresh = result.refreshToken;
  clearTimeout(session.timer);
  // Renew at 80 % of the access token's life, so calls never carry an expired one.
  session.timer = setTimeout(renewSession, Math.max(5, result.expiresIn * 0.8) * 1000);
}

async function renewSession() {
  try {
    keepSession(await authCall("/auth/refresh", { refreshToken: session.refresh }));
  } catch (error) {
    session.access = session.refresh = "";
    $("dashboard").hidden = true;
    $("sign-in-form").hidden = false;
    $("sign-out").hidden = true;
    showError("Your session has ended: sign in again.");
  }
}

async function signInWithPassword(email, password) {
  try {
    keepSession(await authCall("/auth/login", { email, password }));
    await showDashboard();
  } catch (error) {
    session.access = session.refresh = "";
    $("dashboard").hidden = true;
    showError(error.message);
  }
}

async function signOut() {
  clearTimeout(session.timer);
  if (session.refresh) {
    try { await authCall("/auth/logout", { refreshToken: session.refresh }); } catch (error) { /* ended anyway */ }
  }
  session.access = session.refresh = "";
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

function pager(list, load) {
  $(list + "-next").addEventListener("click", (event) => {
    pages[list].push(event.target.dataset.token);
    load().catch((error) => showError(error.message));
  });
  $(list + "-prev").addEventListener("click", () => {
    if (pages[list].length > 1) pages[list].pop();
    load().catch((error) => showError(error.message));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    const email = $("email").value.trim();
    const password = $("password").value;
    $("token").value = "";
    $("password").value = "";
    if (token) signIn(token);
    else if (email && password) signInWithPassword(email, password);
    else showError("Enter your email and password (or an automation token).");
  });
  $("sign-out").addEventListener("click", signOut);
  $("adjust-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("adjust-result").textContent = "";
    const option = $("adjust-org").selectedOptions[0];
    if (!option) return;
    const delta = $("adjust-delta").value.trim();
    const amount = delta.startsWith("-") ? `take ${delta.slice(1)} credits from`
                                         : `add ${delta} credits to`;
    // Money moves only after the admin has read which organisation it is.
    if (!window.confirm(`Really ${amount} ${option.dataset.name} (#${option.value})?`)) return;
    try {
      const result = await api("/admin/credits/adjust", {
        method: "POST",
        body: JSON.stringify({
          organizationId: option.value,
          delta: delta,
          reason: $("adjust-reason").value,
        }),
      });
      $("adjust-result").textContent = `Done: balance is now ${result.balance.balance || 0}.`;
      $("adjust-delta").value = "";
      $("adjust-reason").value = "";
      showError("");
      await refreshAsPermitted();
    } catch (error) {
      showError(error.message);
    }
  });
  pager("users", loadUsers);
  pager("renders", loadRenders);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
});
