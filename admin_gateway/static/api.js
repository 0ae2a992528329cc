// The console's calls: credentials in a header, never in a URL. A person's session (email and
// password, POST /auth/login) lives in this module's memory only, and its access token is
// renewed at 80 % of its life; an automation token is kept in sessionStorage (this tab).
"use strict";

const TOKEN_KEY = "carpet-admin-token";
const session = { access: "", refresh: "", timer: 0, user: null };
let onEnded = () => {};

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    Object.assign(this, { status, code, retryAfter });
  }
}

export function whenSessionEnds(callback) { onEnded = callback; }
export const signedInUser = () => session.user;
export const hasCredential = () => Boolean(session.access || sessionStorage.getItem(TOKEN_KEY));

function credentialHeaders() {
  if (session.access) return { "Authorization": "Bearer " + session.access };
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  return token.split(".").length === 3 ? { "Authorization": "Bearer " + token }
                                       : { "x-admin-token": token };
}

async function failure(response) {
  const body = (response.headers.get("Content-Type") || "").startsWith("application/json")
    ? await response.json() : {};
  return new ApiError(response.status, body.code || "", body.message || response.statusText,
                      response.headers.get("Retry-After"));
}

// A refusal as an ApiError. A 401 to a call that carried a credential means the session (or
// token) is no longer good — ended by an admin, expired, revoked: it is forgotten and the page
// goes back to the sign-in form (whenSessionEnds).
async function refused(response) {
  const error = await failure(response);
  if (response.status === 401 && hasCredential()) {
    forget();
    onEnded();
  }
  return error;
}

export async function api(path, { method = "GET", body } = {}) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", ...credentialHeaders() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await refused(response);
  return response.json();
}

// A picture (or file) fetched with the credential, as a blob: URL (the page's CSP allows them).
export async function blobUrl(path) {
  const response = await fetch(path, { headers: credentialHeaders() });
  if (!response.ok) throw await refused(response);
  return URL.createObjectURL(await response.blob());
}

// A multipart form (files) posted with the credential; the browser writes its boundary.
export async function upload(path, form) {
  const response = await fetch(path, { method: "POST", headers: credentialHeaders(), body: form });
  if (!response.ok) throw await refused(response);
  return response.json();
}

export async function download(path, filename) {
  saveUrl(await blobUrl(path), filename);
}

// Data the page holds, saved as a file.
export function saveBlob(blob, filename) {
  saveUrl(URL.createObjectURL(blob), filename);
}

function saveUrl(url, filename) {
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function authCall(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

function keep(result) {
  session.access = result.accessToken;
  session.refresh = result.refreshToken;
  session.user = result.user;
  clearTimeout(session.timer);
  session.timer = setTimeout(renew, Math.max(5, result.expiresIn * 0.8) * 1000);
}

async function renew() {
  try {
    keep(await authCall("/auth/refresh", { refreshToken: session.refresh }));
  } catch (error) {
    forget();
    onEnded();
  }
}

function forget() {
  clearTimeout(session.timer);
  Object.assign(session, { access: "", refresh: "", user: null });
  sessionStorage.removeItem(TOKEN_KEY);
}

export async function signInWithPassword(email, password) {
  keep(await authCall("/auth/login", { email, password }));
}

export function useAutomationToken(token) {
  forget();
  sessionStorage.setItem(TOKEN_KEY, token);
}

export async function signOut() {
  const refresh = session.refresh;
  forget();
  if (refresh) {
    try { await authCall("/auth/logout", { refreshToken: refresh }); } catch (error) { /* over anyway */ }
  }
}

export function forgetCredential() { forget(); }
