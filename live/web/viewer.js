import { ChatConnection, el, onTokenChange, pageContext, timeOf } from "/static/chat-client.js";
import { StagePlayer } from "/static/viewer-media.js";
import { ProductCard } from "/static/commerce.js";
import { EdgeSelector, pageRegion } from "/static/edge-client.js";

const { room, token } = pageContext();
const $ = (id) => document.getElementById(id);
const messages = $("messages");
// With ?region=: chat and video go to the node GET /api/rooms/{room}/edge names (edge-client.js).
const edge = new EdgeSelector({ room, region: pageRegion() });
if (edge.region) await edge.choose();
// A node that refused this viewer (full, draining): ask for another before the next attempt.
window.liveMediaBase = async (refusal) => {
  if (refusal && edge.region) await edge.choose(edge.node && edge.node.node_id, 3);
  return edge.url;
};
window.liveEdge = edge; // for tests
// The video: WHEP from this node unless a page sets window.liveMediaBase (an edge, say) first.
const player = new StagePlayer({
  stage: $("stage"), room, token,
  mediaBase: async (refusal) =>
    (window.liveMediaBase ? window.liveMediaBase(refusal) : location.origin),
});
window.liveMedia = player; // for tests

function setStatus(kind, detail) {
  const pill = $("status");
  pill.textContent = kind === "live" ? "connected" : kind;
  pill.className = "pill" + (kind === "live" ? " live" : kind === "error" ? " error" : "");
  if (detail) notice(detail);
}
function notice(text) { $("notice").textContent = text; }

function renderMessage(m) {
  const li = el("li", { "data-id": m.id, class: `role-${m.user.role}` },
    el("span", { class: "ts" }, timeOf(m.ts)),
    el("span", { class: "who" }, m.user.name),
    el("span", { class: "text" }, m.text));
  messages.append(li);
  messages.scrollTop = messages.scrollHeight;
}
function renderPinned(m) {
  $("pinned").textContent = m ? `📌 ${m.user.name}: ${m.text}` : "";
}

const productCard = new ProductCard($("product"), { room, token });
onTokenChange((fresh) => { player.token = fresh; productCard.token = fresh; });
const chat = new ChatConnection({
  room, token, url: edge.node ? edge.url : "",
  onStatus: setStatus,
  onJoined: (ack, fresh) => {
    const s = ack.state;
    document.title = s.title;
    $("title").textContent = s.title;
    renderPinned(s.pinned_message);
    $("viewers").textContent = `${s.viewers} watching`;
    $("likes").textContent = `${s.likes} ♥`;
    if (fresh) notice("");
    player.setLive(Boolean(s.live));
    productCard.setState(s);
  },
  handlers: {
    chat: renderMessage,
    deleted: ({ message_id }) => messages.querySelector(`li[data-id="${CSS.escape(message_id)}"]`)?.remove(),
    cleared: () => messages.replaceChildren(),
    pinned: ({ message }) => renderPinned(message),
    likes: ({ total }) => { $("likes").textContent = `${total} ♥`; },
    viewers: ({ count }) => { $("viewers").textContent = `${count} watching`; },
    slow: ({ seconds }) => notice(seconds ? `Slow mode: one message every ${seconds} s` : ""),
    muted: ({ until }) => notice(until ? `You are muted until ${new Date(until).toLocaleTimeString()}` : "You can chat again."),
    banned: () => { setStatus("error", "You were removed from this room."); chat.socket.io.reconnection(false); },
    error: ({ detail }) => notice(detail),
    stream: ({ room: r, live }) => { if (r === room) player.setLive(live); },
  },
});

window.liveChat = chat; // for the console and tests
productCard.listen(chat.socket);

// The chosen node went away: ask again; if another node is offered, move chat and video there
// (chat re-joins with the last id seen, so nothing is missed).
chat.socket.on("disconnect", async (reason) => {
  if (reason === "io client disconnect" || !edge.region || chat.expired) return;
  const gone = edge.node && edge.node.node_id;
  const node = await edge.choose(gone);
  if (!node || node.node_id === gone) return; // Socket.IO's own reconnection carries on
  chat.socket.io.uri = node.url;
  chat.socket.disconnect().connect();
  if (player.live) player.retryNow();
});

$("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value;
  if (!text.trim()) return;
  const ack = await chat.request("chat", { text });
  if (ack.ok) {
    input.value = "";
    notice(ack.held ? "Your message is waiting for a moderator." : "");
  } else {
    notice(ack.detail);
  }
});
$("like").addEventListener("click", () => chat.request("like", { count: 1 }));
