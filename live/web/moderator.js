import { ChatConnection, el, pageContext, timeOf } from "/static/chat-client.js";

const { room, token } = pageContext();
const $ = (id) => document.getElementById(id);
const messages = $("messages");
const notice = (text) => { $("notice").textContent = text; };

function setStatus(kind, detail) {
  const pill = $("status");
  pill.textContent = kind === "live" ? "connected" : kind;
  pill.className = "pill" + (kind === "live" ? " live" : kind === "error" ? " error" : "");
  if (detail) notice(detail);
}

async function act(action, fields = {}) {
  const ack = await chat.request("mod", { action, ...fields });
  notice(ack.ok ? "" : ack.detail);
  if (ack.ok) await refresh();
  return ack;
}

function button(label, onclick, cls = "small") {
  return el("button", { class: cls, type: "button", onclick, "data-action": label }, label);
}

function renderMessage(m) {
  const mine = m.user.role === "moderator" || m.user.role === "host";
  const actions = el("span", { class: "actions" },
    button("pin", () => act("pin_message", { message_id: m.id })),
    button("delete", () => act("delete", { message_id: m.id })));
  if (!mine) {
    actions.append(
      button("mute", () => act("mute", { user_id: m.user.id, seconds: 300 })),
      button("ban", () => act("ban", { user_id: m.user.id })));
  }
  messages.append(el("li", { "data-id": m.id, class: `role-${m.user.role}` }, actions,
    el("span", { class: "ts" }, timeOf(m.ts)),
    el("span", { class: "who" }, m.user.name),
    el("span", { class: "text" }, m.text)));
  messages.scrollTop = messages.scrollHeight;
}

function renderPinned(m) { $("pinned").textContent = m ? `📌 ${m.user.name}: ${m.text}` : ""; }

function list(id, items, render) {
  $(id).replaceChildren(...items.map(render));
  if (!items.length) $(id).append(el("li", {}, "—"));
}

function describe(entry) {
  const target = entry.user_id || entry.message_id || entry.term || (entry.seconds ?? "");
  return `${timeOf(entry.ts)} ${entry.actor_name} ${entry.action} ${target}`;
}

async function refresh() {
  const s = await chat.request("mod_state", {});
  if (!s.ok) { notice(s.detail); return; }
  list("held", s.held, (m) => el("li", { "data-id": m.id },
    el("span", { class: "who" }, m.user.name), el("span", { class: "text" }, m.text), " ",
    button("approve", () => act("approve", { message_id: m.id })),
    button("reject", () => act("reject", { message_id: m.id }))));
  list("muted", s.muted, (m) => el("li", {}, `${m.name} until ${new Date(m.until).toLocaleTimeString()} `,
    button("unmute", () => act("unmute", { user_id: m.user_id }))));
  list("banned", s.banned, (b) => el("li", {}, `${b.name} `, button("unban", () => act("unban", { user_id: b.user_id }))));
  list("terms", s.terms, (t) => el("li", {}, `${t} `, button("unblock", () => act("unblock_term", { term: t }))));
  list("audit", s.audit, (a) => el("li", {}, describe(a)));
  $("slow-state").textContent = s.slow ? `slow mode ${s.slow} s` : "";
  renderPinned(s.pinned_message);
}

const chat = new ChatConnection({
  room, token,
  onStatus: setStatus,
  onJoined: (ack) => {
    $("title").textContent = `Moderation · ${ack.state.title}`;
    $("viewers").textContent = `${ack.state.viewers} watching`;
    refresh();
  },
  handlers: {
    chat: renderMessage,
    deleted: ({ message_id }) => messages.querySelector(`li[data-id="${CSS.escape(message_id)}"]`)?.remove(),
    cleared: () => messages.replaceChildren(),
    pinned: ({ message }) => renderPinned(message),
    viewers: ({ count }) => { $("viewers").textContent = `${count} watching`; },
    held: () => refresh(),
    held_resolved: () => refresh(),
    audit: () => refresh(),
    slow: ({ seconds }) => { $("slow-state").textContent = seconds ? `slow mode ${seconds} s` : ""; },
    error: ({ detail }) => notice(detail),
  },
});

$("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  const ack = await chat.request("chat", { text });
  if (ack.ok) $("text").value = ""; else notice(ack.detail);
});
$("slow-on").addEventListener("click", () => act("slow", { seconds: Number($("slow-seconds").value) }));
$("slow-off").addEventListener("click", () => act("slow", { seconds: 0 }));
$("term-add").addEventListener("click", async () => {
  const ack = await act("block_term", { term: $("term").value });
  if (ack.ok) $("term").value = "";
});
$("clear").addEventListener("click", () => act("clear"));
$("unpin").addEventListener("click", () => act("unpin_message"));
