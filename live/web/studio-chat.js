// The studio's chat panel and room counters: the host reads and answers the room's chat.
import { ChatConnection, el, pageContext, timeOf } from "/static/chat-client.js";
import { declaredLanguage } from "/static/chat-langs.js";

const { room, token } = pageContext();
const $ = (id) => document.getElementById(id);
const messages = $("messages");
const notice = (text) => { $("notice").textContent = text; };

function setStatus(kind, detail) {
  const pill = $("status");
  pill.textContent = kind === "live" ? "chat connected" : `chat ${kind}`;
  pill.className = "pill" + (kind === "error" ? " error" : "");
  if (detail) notice(detail);
}

function renderMessage(m) {
  messages.append(el("li", { "data-id": m.id, class: `role-${m.user.role}` },
    el("span", { class: "ts" }, timeOf(m.ts)),
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
    document.title = `Studio · ${s.title}`;
    $("title").textContent = s.title;
    renderPinned(s.pinned_message);
    $("viewers").textContent = `${s.viewers} watching`;
    $("likes").textContent = `${s.likes} ♥`;
    if (fresh) notice("");
    window.dispatchEvent(new CustomEvent("live:joined", { detail: ack }));
  },
  handlers: {
    chat: renderMessage,
    deleted: ({ message_id }) => messages.querySelector(`li[data-id="${CSS.escape(message_id)}"]`)?.remove(),
    cleared: () => messages.replaceChildren(),
    pinned: ({ message }) => renderPinned(message),
    likes: ({ total }) => { $("likes").textContent = `${total} ♥`; },
    viewers: ({ count }) => { $("viewers").textContent = `${count} watching`; },
    error: ({ detail }) => notice(detail),
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
  notice(ack.ok ? "" : ack.detail);
});
