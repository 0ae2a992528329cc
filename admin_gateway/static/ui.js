// What every screen of the console shares: messages, form checks, table cells and the
// keyset-paged list.
"use strict";

import * as api from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";

export const $ = (id) => document.getElementById(id);
export const PAGE_SIZE = 50;

// ---- messages ---------------------------------------------------------------------------

export function explain(error) {
  if (!(error instanceof api.ApiError)) return t("error.other", { status: "–", message: error.message });
  const params = { seconds: error.retryAfter || "?", message: error.message, status: error.status };
  const key = `error.${error.code}`;
  const text = t(key, params);
  return text === key ? t("error.other", params) : text;
}

// "ok", "denied:PERMISSION_DENIED", "error:UNAVAILABLE" in the reader's words.
export function outcomeText(outcome) {
  const [kind, code] = outcome.split(":");
  if (!code) return i18n.known(`outcome.${kind}`, outcome);
  return i18n.known(`outcome.${kind}`, outcome) === outcome ? outcome
    : t(`outcome.${kind}`, { code: i18n.known(`code.${code}`, code) });
}

export function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
  if (message) $("notice").hidden = true;
}

export function notify(message) {
  $("notice").textContent = message;
  $("notice").hidden = false;
  showError("");
}

export async function guarded(work) {
  try {
    await work();
  } catch (error) {
    // A session that ended meanwhile (an admin deactivated the person, it expired) has
    // already brought back the sign-in form, saying so.
    if (error instanceof api.ApiError && error.status === 401 && !api.hasCredential()) return;
    showError(explain(error));
  }
}

// A field the person must fix: the message names it, the field says so to screen readers.
export function invalid(field, message) {
  field.setAttribute("aria-invalid", "true");
  field.focus();
  showError(message);
  return false;
}

export function clearInvalid(form) {
  for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
}

export function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

// A failed job's error text in the reader's words: one of the render service's fixed texts
// (`jobError.<text>`), or a refusal kept on the job, recognised by its shape (the credit
// service's controls.suspended_message / spend_limit_message) with its figures; anything
// else (a renderer's own message) as it is.
const JOB_REFUSALS = [
  [/^organisation (\d+) is suspended: (.*)$/s, (m) => ["jobError.suspended", { reason: m[2] }]],
  [/^this month's spend limit of (\d+) credits would be passed$/,
   (m) => ["jobError.monthlyLimit", { limit: i18n.number(m[1]) }]],
  [/^user (\d+)'s daily spend limit of (\d+) credits would be passed$/,
   (m) => ["jobError.dailyLimit", { user: m[1], limit: i18n.number(m[2]) }]],
];

export function jobError(text) {
  if (!text) return "";
  for (const [shape, words] of JOB_REFUSALS) {
    const match = shape.exec(text);
    if (match) {
      const [key, params] = words(match);
      return t(key, params);
    }
  }
  return i18n.known(`jobError.${text}`, text);
}

// ---- tables -------------------------------------------------------------------------------

export function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content);
  else td.textContent = content == null ? "" : String(content);
  row.appendChild(td);
  return td;
}

// Each cell names its column (data-label): on a phone a row is shown as a card of
// "column: value" lines instead of a table cut off on the right (style.css).
export function labelCells(table) {
  const names = [...table.tHead.rows[0].cells].map((heading) => heading.textContent.trim());
  for (const row of table.tBodies[0].rows) {
    [...row.cells].forEach((field, index) => {
      if (names[index] && field.colSpan === 1) field.dataset.label = names[index];
    });
  }
}

// A file's bytes as base64 (how JSON bodies carry pictures).
export function fileBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", () => guarded(onClick));
  return element;
}

// A keyset-paged list: the first page on reload(), the next ones on "Load more".
export class PagedList {
  constructor(name, { path, items, query, row }) {
    Object.assign(this, { name, path, items, query, row, token: "" });
    this.body = $(name).querySelector("tbody");
    this.more = $(`${name}-more`);
    this.more.addEventListener("click", () => guarded(() => this.next()));
  }

  params() {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(this.query())) if (value) params.set(key, value);
    return params;
  }

  async reload() {
    this.token = "";
    this.body.replaceChildren();
    await this.next();
  }

  async next() {
    const params = this.params();
    params.set("pageSize", PAGE_SIZE);
    if (this.token) params.set("pageToken", this.token);
    const result = await api.api(`${this.path}?${params}`);
    const rows = result[this.items] || [];
    if (!rows.length && !this.token) {
      const empty = document.createElement("tr");
      cell(empty, t("common.empty")).colSpan = $(this.name).querySelectorAll("th").length;
      this.body.appendChild(empty);
    }
    for (const item of rows) this.body.appendChild(this.row(item));
    labelCells($(this.name));
    this.token = result.nextPageToken || "";
    this.more.hidden = !this.token;
  }

  // In the console's language, with the separator chosen (csvDelimiter).
  async downloadCsv() {
    const params = this.params();
    params.set("lang", i18n.language());
    params.set("delimiter", csvDelimiter());
    await api.download(`${this.path}.csv?${params}`, `${this.name}.csv`);
  }
}


// ---- CSV separator ------------------------------------------------------------------------

// A spreadsheet set to Turkish splits lines on ";", one set to English on ",": the default
// follows the console's language until the person picks one (kept in this browser).
const DELIMITER_KEY = "carpet-csv-delimiter";
const DELIMITERS = ["semicolon", "comma"];

export function csvDelimiter() {
  const chosen = localStorage.getItem(DELIMITER_KEY);
  if (DELIMITERS.includes(chosen)) return chosen;
  return i18n.language() === "tr" ? "semicolon" : "comma";
}

// A separator picker beside every CSV button, in the language of the moment.
export function fillDelimiterPickers() {
  for (const download of document.querySelectorAll("button.csv")) {
    let picker = download.previousElementSibling;
    if (!picker || !picker.classList.contains("csv-delimiter")) {
      picker = document.createElement("select");
      picker.className = "csv-delimiter";
      picker.addEventListener("change", () => {
        localStorage.setItem(DELIMITER_KEY, picker.value);
        fillDelimiterPickers();
      });
      download.before(picker);
    }
    picker.setAttribute("aria-label", t("common.csvDelimiter"));
    picker.replaceChildren(...DELIMITERS.map((name) => new Option(t(`csv.${name}`), name)));
    picker.value = csvDelimiter();
  }
}

// ---- days ---------------------------------------------------------------------------------

function nextDay(isoDate) {
  const day = new Date(isoDate + "T00:00:00Z");
  day.setUTCDate(day.getUTCDate() + 1);
  return day.toISOString().replace(".000Z", "Z");
}

// The form's day fields (.date-field), checked: false, with the first bad one marked, when one
// holds something that is not a day.
export function checkDays(form) {
  clearInvalid(form);
  for (const field of form.querySelectorAll(".date-field")) {
    if (i18n.parseDay(field.value) === null) {
      return invalid(field, t("common.badDate", { pattern: t("common.datePattern") }));
    }
  }
  return true;
}

// A day field as the first moment of its day, and as the first moment after it (UTC); "" empty.
export function dayStart(field) {
  const day = i18n.parseDay(field.value);
  return day ? `${day}T00:00:00Z` : "";
}

export function dayEnd(field) {
  const day = i18n.parseDay(field.value);
  return day ? nextDay(day) : "";
}
