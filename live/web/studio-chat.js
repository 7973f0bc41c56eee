// The studio's chat panel and room counters: the host reads and answers the room's chat.
import { ChatConnection, el, pageContext } from "/static/chat-client.js";
import { declaredLanguage } from "/static/chat-langs.js";
import {
  errorText, formatNumber, initI18n, onLanguageChange, setPlain, setText, setTime, t,
} from "/static/i18n.js";

const { room, token } = pageContext();
const $ = (id) => document.getElementById(id);
const messages = $("messages");
const notice = (text) => { setPlain($("notice"), text); };
initI18n({ switcherIn: $("lang-switch") }); // the page's language and its switcher (i18n.js)
let title = "";
let likes = 0;
const showLikes = (total) => { likes = total; $("likes").textContent = `${formatNumber(total)} ♥`; };
const showTitle = () => { if (title) document.title = t("studio.titleRoom", { title }); };
onLanguageChange(() => { showLikes(likes); showTitle(); });

function setStatus(kind, detail) {
  const pill = $("status");
  setText(pill, `studio.chatStatus.${kind === "live" ? "connected" : kind}`);
  pill.className = "pill" + (kind === "error" ? " error" : "");
  if (detail) notice(detail);
}

function renderMessage(m) {
  messages.append(el("li", { "data-id": m.id, class: `role-${m.user.role}` },
    setTime(el("span", { class: "ts" }), m.ts),
    m.gift ? el("span", { class: "gift-tag" }, `🎁 ${m.gift.name}`) : "",
    el("span", { class: "who" }, m.user.name),
    el("span", { class: "text" }, m.text)));
  messages.scrollTop = messages.scrollHeight;
}
const renderPinned = (m) => { $("pinned").textContent = m ? `📌 ${m.user.name}: ${m.text}` : ""; };

const chat = new ChatConnection({
  room, token,
  onStatus: setStatus,
  onJoined: (ack, fresh) => {
    const s = ack.state;
    title = s.title;
    showTitle();
    setPlain($("title"), s.title);
    renderPinned(s.pinned_message);
    setText($("viewers"), "counts.watching", { count: s.viewers });
    showLikes(s.likes);
    if (fresh) notice("");
    window.dispatchEvent(new CustomEvent("live:joined", { detail: ack }));
  },
  handlers: {
    chat: renderMessage,
    deleted: ({ message_id }) => messages.querySelector(`li[data-id="${CSS.escape(message_id)}"]`)?.remove(),
    cleared: () => messages.replaceChildren(),
    pinned: ({ message }) => renderPinned(message),
    likes: ({ total }) => showLikes(total),
    viewers: ({ count }) => setText($("viewers"), "counts.watching", { count }),
    error: (e) => notice(errorText(e)),
  },
});
window.liveChat = chat; // for other studio modules and tests

$("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("text");
  if (!input.value.trim()) return;
  // The host's messages carry the language they write in (chat-langs.js), for viewers' filters.
  const ack = await chat.request("chat", { text: input.value, lang: declaredLanguage() || undefined });
  if (ack.ok) input.value = "";
  notice(ack.ok ? "" : errorText(ack));
});
