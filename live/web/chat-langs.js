// Chat across languages on the pages: the language a message is written in (declared by the
// sender, overridable), the viewer's filter by language, and translations the node sends
// (`translate` request, `chat_translation` events). Choices are remembered in localStorage.
"use strict";

// The pages' languages (issue 14); strings stay English until the pages are translated.
export const LANGUAGES = [
  ["en", "English"], ["zh", "Chinese"], ["es", "Spanish"], ["fr", "French"],
  ["de", "German"], ["ja", "Japanese"], ["ko", "Korean"], ["th", "Thai"],
];
const NAMES = new Map(LANGUAGES);
const KEYS = { send: "live-chat-lang", filter: "live-chat-filter", translate: "live-chat-translate" };

// The language subtag of a BCP 47 tag (`pt-BR` -> `pt`), or "" when it is not one.
export function languageOf(tag) {
  const sub = String(tag || "").split("-")[0].toLowerCase();
  return /^[a-z]{2,3}$/.test(sub) ? sub : "";
}

function remembered(key) {
  try { return localStorage.getItem(key) || ""; } catch { return ""; }
}
function remember(key, value) {
  try { localStorage.setItem(key, value); } catch { /* storage off: this page only */ }
}

// The language this page's user writes in: their choice, else the browser's, else the page's.
export function declaredLanguage() {
  return languageOf(remembered(KEYS.send)) || languageOf(navigator.language)
    || languageOf(document.documentElement.lang) || "";
}

function fill(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => {
    const option = document.createElement("option");
    option.value = v;
    option.textContent = label;
    return option;
  }));
  select.value = options.some(([v]) => v === value) ? value : options[0][0];
}

export class ChatLanguages {
  // `messages`: the <ul> of messages (each <li data-id>); selects: `send` (the language written
  // in), `filter` (all / mine / one language), `translate` (off / one language).
  constructor({ messages, send, filter, translate, request, notice }) {
    this.messages = messages;
    this.request = request;
    this.notice = notice;
    this.pending = new Map(); // translations of messages not shown yet (held behind a join)
    const mine = languageOf(navigator.language) || "en";
    const own = NAMES.has(mine) ? [] : [[mine, mine]];
    this.send = send;
    fill(send, [...LANGUAGES, ...own], declaredLanguage());
    send.addEventListener("change", () => remember(KEYS.send, send.value));
    this.filter = filter;
    fill(filter, [["all", "All languages"], ["mine", "My languages"], ...LANGUAGES, ...own],
      remembered(KEYS.filter) || "all");
    filter.addEventListener("change", () => { remember(KEYS.filter, filter.value); this.applyFilter(); });
    this.translate = translate;
    fill(translate, [["", "Off"], ...LANGUAGES], remembered(KEYS.translate));
    translate.addEventListener("change", () => {
      remember(KEYS.translate, translate.value);
      this.ask();
    });
  }

  // The languages "mine" shows: the browser's and the one written in.
  mine() {
    const langs = new Set((navigator.languages || [navigator.language]).map(languageOf));
    langs.add(this.send.value);
    if (this.translate.value) langs.add(this.translate.value);
    langs.delete("");
    return langs;
  }

  // A message's <li>: its language tag, and whether the filter shows it.
  decorate(li, message) {
    const lang = languageOf(message.lang);
    li.dataset.langs = lang;
    if (lang) {
      const tag = document.createElement("span");
      tag.className = "lang";
      tag.textContent = lang;
      tag.title = NAMES.get(lang) || lang;
      li.querySelector(".who")?.before(tag);
    }
    const early = this.pending.get(message.id);
    if (early) {
      this.pending.delete(message.id);
      this.show(li, early);
    }
    this.applyFilter(li);
  }

  applyFilter(only) {
    const choice = this.filter.value;
    const wanted = choice === "all" ? null : choice === "mine" ? this.mine() : new Set([choice]);
    for (const li of only ? [only] : this.messages.children) {
      const langs = (li.dataset.langs || "").split(" ").filter(Boolean);
      // Messages with no language show under every filter; a translation counts as a language.
      li.hidden = Boolean(wanted && langs.length && !langs.some((l) => wanted.has(l)));
    }
  }

  // `chat_translation {id, lang, text}`: shown under the original (kept for a moment if the
  // original is not shown yet).
  onTranslation(t) {
    if (t.lang !== this.translate.value) return;
    const li = this.messages.querySelector(`li[data-id="${CSS.escape(t.id)}"]`);
    if (!li) {
      this.pending.set(t.id, t);
      if (this.pending.size > 200) this.pending.delete(this.pending.keys().next().value);
      return;
    }
    this.show(li, t);
    this.applyFilter(li);
  }

  show(li, t) {
    let span = li.querySelector(".translation");
    if (!span) {
      span = document.createElement("span");
      span.className = "translation";
      li.append(span);
    }
    span.lang = t.lang;
    span.textContent = t.text;
    const langs = new Set((li.dataset.langs || "").split(" ").filter(Boolean));
    langs.add(t.lang);
    li.dataset.langs = [...langs].join(" ");
  }

  // After every (re)join and on a change: ask the node for translations into the chosen
  // language, of what comes and of the messages shown (the last 50).
  async ask() {
    const lang = this.translate.value || null;
    for (const span of this.messages.querySelectorAll(".translation")) {
      if (span.lang !== lang) {
        span.remove();
      }
    }
    for (const li of this.messages.children) {
      const own = languageOf(li.querySelector(".lang")?.textContent);
      li.dataset.langs = [own, li.querySelector(".translation")?.lang].filter(Boolean).join(" ");
    }
    this.applyFilter();
    const ids = lang ? [...this.messages.children]
      .filter((li) => !li.querySelector(".translation") && /^\d+-\d+$/.test(li.dataset.id))
      .slice(-50).map((li) => li.dataset.id) : [];
    if (!lang && !this.asked) return;
    this.asked = true;
    const ack = await this.request("translate", { lang, ids });
    if (!ack.ok) this.notice(ack.detail);
    else if (lang && !ack.available) this.notice("Translation is not available on this server.");
  }
}
