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
  // A gift's message: hiding it deletes the chat message; the gift itself stays.
  const actions = el("span", { class: "actions" },
    button("pin", () => act("pin_message", { message_id: m.id })),
    m.gift ? button("hide", () => hideGiftMessage(m.id))
      : button("delete", () => act("delete", { message_id: m.id })));
  if (!mine) {
    actions.append(
      button("mute", () => act("mute", { user_id: m.user.id, seconds: 300 })),
      button("ban", () => act("ban", { user_id: m.user.id })));
  }
  messages.append(el("li", { "data-id": m.id, class: `role-${m.user.role}` }, actions,
    el("span", { class: "ts" }, timeOf(m.ts)),
    m.gift ? el("span", { class: "gift-tag" }, `🎁 ${m.gift.name}`) : "",
    el("span", { class: "who" }, m.user.name),
    el("span", { class: "text" }, m.text)));
  messages.scrollTop = messages.scrollHeight;
}

// Gifts in the room (newest first), their messages with a Hide button.
const GIFTS_LISTED = 50;
function renderGift(g) {
  const text = el("span", { class: "text" }, g.message ? g.message.text : "");
  const item = el("li", { "data-gift": g.gift_id, "data-sender": g.sender.id },
    el("span", { class: "ts" }, timeOf(Date.now())), " ",
    el("span", { class: "who" }, `${g.sender.name} sent ${g.name}${g.combo > 1 ? ` ×${g.combo}` : ""}`), " ", text);
  if (g.message) {
    item.dataset.message = g.message.id;
    item.append(" ", button("hide", () => hideGiftMessage(g.message.id)));
  }
  $("gifts").prepend(item);
  while ($("gifts").children.length > GIFTS_LISTED) $("gifts").lastElementChild.remove();
}
async function hideGiftMessage(id) {
  const ack = await act("delete", { message_id: id });
  if (ack.ok || ack.error === "unknown_message") forgetGiftMessage(id);
}
function forgetGiftMessage(id) {
  for (const li of $("gifts").querySelectorAll("li[data-message]")) {
    if (li.dataset.message !== id) continue;
    li.querySelector(".text").textContent = "(hidden)";
    li.querySelector("button[data-action=hide]")?.remove();
    delete li.dataset.message;
  }
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
    deleted: ({ message_id }) => {
      messages.querySelector(`li[data-id="${CSS.escape(message_id)}"]`)?.remove();
      forgetGiftMessage(message_id);
    },
    gift: (g) => renderGift(g),
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
