// Every text of the console comes from one catalogue per language (i18n/tr.json, i18n/en.json);
// numbers, dates and plurals are formatted for the language's locale (tr-TR: 1.234, 25.11.2026).
"use strict";

const SUPPORTED = ["tr", "en"];
const LOCALES = { tr: "tr-TR", en: "en-GB" };
const STORED = "carpet-language";
let catalogue = {};
let current = "en";

export function preferredLanguage() {
  const stored = localStorage.getItem(STORED);
  if (SUPPORTED.includes(stored)) return stored;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = tag.toLowerCase().split("-")[0];
    if (SUPPORTED.includes(base)) return base;
  }
  return "en";
}

export const language = () => current;
export const locale = () => LOCALES[current];

export async function setLanguage(code) {
  const response = await fetch(`/admin/static/i18n/${code}.json`);
  catalogue = await response.json();
  current = code;
  localStorage.setItem(STORED, code);
  document.documentElement.lang = code;
  translate(document);
}

// t("adjust.done", {name, balance}); a plural entry is {"one": …, "other": …} chosen by count.
export function t(key, params = {}) {
  let text = catalogue[key];
  if (text === undefined) return key;
  if (typeof text === "object") {
    text = text[new Intl.PluralRules(locale()).select(Number(params.count) || 0)] ?? text.other;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

// A value the server sends in its own words (a mode, a renderer, a credit-log reason, an audit
// action): the catalogue's name for it, else the value itself (a mode the operator added, a
// reason an admin typed).
export function known(key, value) {
  const text = t(key);
  return text === key ? value : text;
}

// Static markup names its texts: data-i18n (text), data-i18n-label (aria-label),
// data-i18n-placeholder.
export function translate(root) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  for (const element of root.querySelectorAll("[data-i18n-placeholder]")) {
    element.setAttribute("placeholder", t(element.dataset.i18nPlaceholder));
  }
}

export function number(value) {
  return new Intl.NumberFormat(locale()).format(Number(value || 0));
}

// A share (0.25) as the locale writes a percentage: %25 in Turkish, 25% in English.
export function percent(share) {
  return new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: 1 })
    .format(Number(share || 0));
}

export function signedNumber(value) {
  return new Intl.NumberFormat(locale(), { signDisplay: "exceptZero" }).format(Number(value || 0));
}

// A calendar day (YYYY-MM-DD, UTC) as the locale writes it: 25.11.2026 in Turkish.
export function day(isoDate) {
  return new Intl.DateTimeFormat(locale(), { day: "2-digit", month: "2-digit", year: "numeric",
    timeZone: "UTC" }).format(new Date(isoDate + "T00:00:00Z"));
}

export function shortDay(isoDate) {
  return new Intl.DateTimeFormat(locale(), { day: "2-digit", month: "2-digit", timeZone: "UTC" })
    .format(new Date(isoDate + "T00:00:00Z"));
}

// A moment in the viewer's time zone: 25.11.2026 14:05.
export function moment(isoTime) {
  if (!isoTime) return "";
  return new Intl.DateTimeFormat(locale(), { day: "2-digit", month: "2-digit", year: "numeric",
    hour: "2-digit", minute: "2-digit" }).format(new Date(isoTime));
}

// A calendar day typed the locale's way — day first in both languages: 31.12.2026 (tr),
// 31/12/2026 (en); any of . / - between the parts, or ISO 2026-12-31 — as YYYY-MM-DD; "" for an
// empty field, null for anything else (31.02.2026 included). The browser's own date picker
// follows the browser's language, not the console's: a Turkish console showed mm/dd/yyyy.
export function parseDay(text) {
  const typed = (text || "").trim();
  if (!typed) return "";
  let parts = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(typed);
  if (parts) parts = [parts[3], parts[2], parts[1]];
  else parts = (/^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$/.exec(typed) || []).slice(1);
  if (parts.length !== 3) return null;
  const [dayOfMonth, month, year] = parts.map(Number);
  const date = new Date(Date.UTC(year, month - 1, dayOfMonth));
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1
      || date.getUTCDate() !== dayOfMonth) return null;
  return date.toISOString().slice(0, 10);
}
