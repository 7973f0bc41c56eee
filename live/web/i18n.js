// The pages' language (issue 14): i18next with one catalogue per language
// (/static/locales/LANG.json), the choice from ?lang=, then the remembered one (localStorage),
// then the browser's languages, then English. Elements carry their key (`data-i18n`, with
// `data-i18n-args` JSON; `data-i18n-attr="placeholder:key;aria-label:key"`) so a switch
// re-renders them in place: no reload, the Socket.IO connection stays. Numbers, prices and
// times go through Intl in the page's locale (`<html lang>`).
"use strict";

import i18next from "/vendor/i18next.js";

// The eight languages, each named in itself (the switcher's labels).
export const LANGUAGES = [
  ["en", "English"], ["zh", "中文（简体）"], ["es", "Español"], ["fr", "Français"],
  ["de", "Deutsch"], ["ja", "日本語"], ["ko", "한국어"], ["th", "ไทย"],
];
const CODES = LANGUAGES.map(([code]) => code);
// BCP 47 tags for <html lang> and Intl: Chinese is Simplified (the catalogue is zh.json).
const TAGS = { zh: "zh-Hans" };
const STORE = "live-ui-lang";

// One of the eight for a BCP 47 tag (`zh-TW` -> zh, `ja-JP` -> ja), or "" (`pt-BR`).
export function matchLanguage(tag) {
  const sub = String(tag || "").trim().split(/[-_]/)[0].toLowerCase();
  return CODES.includes(sub) ? sub : "";
}

function remembered() {
  try { return localStorage.getItem(STORE) || ""; } catch { return ""; }
}

// ?lang=, then the user's remembered choice, then navigator.languages, then English.
export function chooseLanguage() {
  const asked = matchLanguage(new URLSearchParams(location.search).get("lang"));
  if (asked) return asked;
  const mine = matchLanguage(remembered());
  if (mine) return mine;
  for (const tag of navigator.languages || [navigator.language]) {
    const found = matchLanguage(tag);
    if (found) return found;
  }
  return "en";
}

const loaded = new Set();
async function load(lang) {
  if (loaded.has(lang)) return;
  const res = await fetch(`/static/locales/${lang}.json`);
  if (!res.ok) throw new Error(`catalogue ${lang}: ${res.status}`);
  i18next.addResourceBundle(lang, "translation", await res.json(), true, true);
  loaded.add(lang);
}

export function language() { return i18next.language || "en"; }
// The page's locale for Intl (`zh-Hans` for zh).
// (The browser's default before i18next starts: a page that has not picked a language.)
export function locale() {
  if (!i18next.isInitialized) return undefined;
  return TAGS[language()] || language();
}

export function t(key, args) {
  if (!i18next.isInitialized) return (args && args.defaultValue) || key;
  return i18next.t(key, args);
}

// The message for an error code (an HTTP body's or an acknowledgement's `error`); the server's
// English `detail` only when the code has none.
export function errorText(answer) {
  const a = answer || {};
  const fallback = a.detail || t("errors.unknown");
  if (!a.error) return fallback;
  return t(`errors.${a.error}`, { balance: a.balance ?? 0, defaultValue: fallback });
}

export function formatNumber(value, options) {
  return new Intl.NumberFormat(locale(), options).format(value);
}

// A price in minor units, in its currency, formatted for the page's locale.
export function formatPrice(minor, currency) {
  try {
    const fmt = new Intl.NumberFormat(locale(), { style: "currency", currency });
    const digits = fmt.resolvedOptions().maximumFractionDigits;
    return fmt.format(minor / 10 ** digits);
  } catch {
    return `${minor} ${currency}`;
  }
}

export function formatTime(ts, seconds = false) {
  const options = { hour: "2-digit", minute: "2-digit", ...(seconds ? { second: "2-digit" } : {}) };
  return new Intl.DateTimeFormat(locale(), options).format(new Date(ts));
}

// Sets a node's text from a key, remembered on the node so a switch re-renders it.
export function setText(node, key, args) {
  node.dataset.i18n = key;
  if (args) node.dataset.i18nArgs = JSON.stringify(args); else delete node.dataset.i18nArgs;
  node.textContent = t(key, args);
  return node;
}

// Sets a node's text that is not from the catalogue (a server's detail, a user's text).
export function setPlain(node, text) {
  delete node.dataset.i18n;
  delete node.dataset.i18nArgs;
  node.textContent = text;
  return node;
}

// A time shown in the page's locale (`data-ts`), re-rendered on a switch.
export function setTime(node, ts, seconds = false) {
  node.dataset.ts = String(ts);
  if (seconds) node.dataset.tsSeconds = "1";
  node.textContent = formatTime(ts, seconds);
  return node;
}

// Re-renders every keyed element, attribute and time under `root`.
export function translate(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) {
    const args = node.dataset.i18nArgs ? JSON.parse(node.dataset.i18nArgs) : undefined;
    node.textContent = t(node.dataset.i18n, args);
  }
  for (const node of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of node.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      if (attr && key) node.setAttribute(attr, t(key));
    }
  }
  for (const node of root.querySelectorAll("[data-ts]")) {
    node.textContent = formatTime(Number(node.dataset.ts), Boolean(node.dataset.tsSeconds));
  }
}

const listeners = new Set();
// `fn(lang)` after each switch (for what a page renders itself: counts, cards, selects).
export function onLanguageChange(fn) { listeners.add(fn); }

function applyDocument() {
  document.documentElement.lang = locale() || "en";
  translate();
  for (const select of document.querySelectorAll("select.ui-lang")) select.value = language();
}

export async function setLanguage(lang, { remember = true } = {}) {
  const code = matchLanguage(lang) || "en";
  await load(code);
  await i18next.changeLanguage(code);
  if (remember) {
    try { localStorage.setItem(STORE, code); } catch { /* storage off: this page only */ }
  }
  applyDocument();
  for (const fn of listeners) fn(code);
}

// The language switcher: a <select class="ui-lang"> (each language named in itself).
export function languageSwitcher() {
  const select = document.createElement("select");
  select.className = "ui-lang";
  select.id = "ui-lang";
  select.dataset.i18nAttr = "aria-label:lang.label;title:lang.label";
  for (const [code, name] of LANGUAGES) {
    const option = document.createElement("option");
    option.value = code;
    option.lang = TAGS[code] || code;
    option.textContent = name;
    select.append(option);
  }
  select.value = language();
  select.setAttribute("aria-label", t("lang.label"));
  select.title = t("lang.label");
  select.addEventListener("change", () => setLanguage(select.value).catch((err) => {
    console.warn(`i18n: ${err.message}`);
    select.value = language(); // the catalogue did not load: the page stays as it is
  }));
  return select;
}

// Starts i18next with English (the fallback) and the chosen language and renders the page.
async function start() {
  const lang = chooseLanguage();
  await i18next.init({
    lng: lang, fallbackLng: "en", supportedLngs: CODES, load: "languageOnly",
    resources: {}, interpolation: { escapeValue: false }, returnNull: false,
  });
  // A catalogue that cannot be fetched must not stop the page: English (or the keys) instead.
  const ready = await Promise.all([...new Set(["en", lang])].map((code) => load(code)
    .then(() => true, (err) => { console.warn(`i18n: ${err.message}`); return false; })));
  await i18next.changeLanguage(ready[ready.length - 1] ? lang : "en");
  applyDocument();
  window.liveI18n = { setLanguage, language, t }; // for tests and the console
}

// Every module that imports this one runs after the catalogues are in (top-level await), so
// no page renders a string before its language is known.
await start();

// Renders the page's keyed elements once more and puts a switcher into `switcherIn`.
export function initI18n({ switcherIn = null } = {}) {
  applyDocument();
  if (switcherIn && !switcherIn.querySelector("select.ui-lang")) switcherIn.append(languageSwitcher());
  return language();
}
