import { ChatConnection, el, onTokenChange, pageContext, timeOf } from "/static/chat-client.js";
import { StagePlayer } from "/static/viewer-media.js";
import { ProductCard } from "/static/commerce.js";
import { CouponCard } from "/static/coupon-card.js";
import { EdgeSelector, pageRegion } from "/static/edge-client.js";
import { GiftDrawer, GiftLayer, Leaderboard } from "/static/gifts.js";
import { ChatLanguages } from "/static/chat-langs.js";

const { room, token } = pageContext();
const $ = (id) => document.getElementById(id);
const messages = $("messages");
// With ?region=: chat and video go to the node GET /api/rooms/{room}/edge names (edge-client.js).
const edge = new EdgeSelector({ room, region: pageRegion() });
if (edge.region) await edge.choose();
// A node that refused this viewer (full, draining): ask for another before the next attempt.
window.liveMediaBase = async (refusal) => {
  if (refusal && edge.region) await edge.choose({ avoid: edge.node && edge.node.node_id, tries: 3 });
  return edge.url;
};
window.liveEdge = edge; // for tests
// The video: WHEP from this node unless a page sets window.liveMediaBase (an edge, say) first.
const player = new StagePlayer({
  stage: $("stage"), room, token,
  mediaBase: async (refusal) =>
    (window.liveMediaBase ? window.liveMediaBase(refusal) : location.origin),
  onLost: (reason) => nodeLost(reason),
});
window.liveMedia = player; // for tests
// Gift animations: tiers 1 and 2 in the video's corner, tier 3 over the whole page.
const giftCorner = el("div", { class: "gift-corner", id: "gift-corner", "aria-live": "polite" });
$("stage").append(giftCorner);
const gifts = new GiftLayer({ corner: giftCorner, full: $("gift-layer") });
window.liveGifts = gifts; // for tests
const leaderboard = new Leaderboard($("leaderboard"), { room });
leaderboard.load();

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
    m.gift ? el("span", { class: "gift-tag" }, `🎁 ${m.gift.name}`) : "",
    el("span", { class: "who" }, m.user.name),
    el("span", { class: "text" }, m.text));
  messages.append(li);
  langs.decorate(li, m);
  messages.scrollTop = messages.scrollHeight;
}
function renderPinned(m) {
  $("pinned").textContent = m ? `📌 ${m.user.name}: ${m.text}` : "";
}

let productCard = null;
const couponCard = new CouponCard($("coupon"), {
  room, token, currency: () => productCard && (productCard.current()?.currency || productCard.product?.currency),
});
productCard = new ProductCard($("product"), { room, token, coupon: couponCard });
onTokenChange((fresh) => { player.token = fresh; productCard.token = fresh; couponCard.token = fresh; drawer.token = fresh; });
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
    couponCard.setState(s);
    if (!fresh) leaderboard.load(); // back after a break: what changed meanwhile
    langs.ask(); // the node forgets a socket's translation language when it goes
  },
  handlers: {
    chat: renderMessage,
    deleted: ({ message_id }) => {
      messages.querySelector(`li[data-id="${CSS.escape(message_id)}"]`)?.remove();
      gifts.hideMessage(message_id); // a gift's message hidden by a moderator
    },
    cleared: () => messages.replaceChildren(),
    pinned: ({ message }) => renderPinned(message),
    likes: ({ total }) => { $("likes").textContent = `${total} ♥`; },
    viewers: ({ count }) => { $("viewers").textContent = `${count} watching`; },
    slow: ({ seconds }) => notice(seconds ? `Slow mode: one message every ${seconds} s` : ""),
    muted: ({ until }) => notice(until ? `You are muted until ${new Date(until).toLocaleTimeString()}` : "You can chat again."),
    banned: () => { setStatus("error", "You were removed from this room."); chat.socket.io.reconnection(false); },
    error: ({ detail }) => notice(detail),
    stream: ({ room: r, live }) => { if (r === room) player.setLive(live); },
    gift: (g) => { if (g.room === room) { leaderboard.learn(g.sender); gifts.show(g); } },
    leaderboard: (board) => leaderboard.render(board),
    chat_translation: (t) => { if (t.room === room) langs.onTranslation(t); },
  },
});

window.liveChat = chat; // for the console and tests
// Declared message language, the filter by language, translations (chat-langs.js).
const langs = new ChatLanguages({
  messages, send: $("lang"), filter: $("chat-filter"), translate: $("translate-to"),
  request: (event, payload) => chat.request(event, payload), notice,
});
productCard.listen(chat.socket);
couponCard.listen(chat.socket);
const drawer = new GiftDrawer({ root: $("gift-drawer"), toggle: $("gift-open"), room, token,
  request: (event, payload) => chat.request(event, payload) });

// Failover. Whichever comes first (the chosen node's Socket.IO connection closing, the video's
// frames stopping for a second, its peer connection "disconnected"/"failed") asks the node
// whether it is there at all. A node that does not answer is dead: selection is asked at once
// for another, excluding it (the registry lists it until its TTL runs out), and video then chat
// move there (chat re-joins with the last id seen, so nothing is missed). A node that answers
// keeps the viewer unless selection no longer offers it (draining); Socket.IO's and the player's
// own retries carry on.
let failing = null;
function nodeLost(reason) {
  if (!edge.region || chat.expired) return null;
  failing ??= failover(reason).finally(() => { failing = null; });
  return failing;
}
async function failover(reason) {
  const node = edge.node;
  const gone = node && node.node_id;
  const dead = !(await edge.alive(edge.url));
  if (dead) edge.markDead(node);
  const next = await edge.choose({ avoid: gone, tries: dead ? 20 : 1 });
  if (!next || next.node_id === gone) return; // stay
  console.info(`moving to ${next.node_id}: ${gone || "this page's node"} ${dead ? "is gone" : "is draining"} (${reason})`);
  if (player.live) player.retryNow(); // video first: it is what the viewer sees
  chat.socket.io.uri = next.url;
  chat.socket.disconnect().connect();
}
window.liveFailover = nodeLost; // for tests

chat.socket.on("disconnect", (reason) => {
  if (reason === "io client disconnect") return;
  nodeLost(`chat: ${reason}`);
});

$("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value;
  if (!text.trim()) return;
  const ack = await chat.request("chat", { text, lang: langs.send.value || undefined });
  if (ack.ok) {
    input.value = "";
    notice(ack.held ? "Your message is waiting for a moderator." : "");
  } else {
    notice(ack.detail);
  }
});
$("like").addEventListener("click", () => chat.request("like", { count: 1 }));
