// Gifts on the pages: the viewer's drawer (catalogue, balance, send), the animation layer over
// the video (bounded, never catching a click), the leaderboard, and the studio's earnings.
// Every user-supplied string goes through textContent only.
"use strict";

import { el } from "/static/chat-client.js";
import { idempotencyKey } from "/static/commerce.js";

const ICONS = { rose: "🌹", heart: "❤️", star: "⭐", crown: "👑", rocket: "🚀", castle: "🏰" };
export const giftIcon = (gift) => ICONS[gift.gift_id] || ICONS[gift.animation] || "🎁";

export async function apiGet(path, token) {
  try {
    const res = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    return { status: res.status, data: await res.json() };
  } catch (err) {
    return { status: 0, data: { error: "network", detail: String(err) } };
  }
}

// "Alice sent Rose ×12": the sender, the gift, the streak so far.
export function giftLine(g) {
  const combo = g.combo > 1 ? ` ×${g.combo}` : "";
  return `${g.sender.name} sent ${g.name}${combo}`;
}

const ERRORS = {
  insufficient_credits: (ack) => `Not enough credits: your balance is ${ack.balance ?? 0}.`,
  rate_limited: () => "Too many gifts at once: wait a moment.",
  unknown_gift: () => "This gift is not available in this room.",
  muted: () => "You are muted in this room.",
  banned: () => "You are banned from this room.",
  too_long: (ack) => ack.detail,
  not_joined: () => "Not connected to the room yet.",
  timeout: () => "The server did not answer: try again.",
};

// The gift drawer: a button opens it; the room's catalogue with prices in credits; the balance
// from GET /api/wallet, then from every acknowledgement; one idempotency key per click.
export class GiftDrawer {
  constructor({ root, toggle, room, token, request }) {
    Object.assign(this, { root, toggle, room, token, request });
    this.balance = el("span", { id: "gift-balance" }, "…");
    this.list = el("div", { class: "gift-list", id: "gift-list" });
    this.message = el("input", { id: "gift-message", maxlength: "80", autocomplete: "off",
      placeholder: "Add a message (optional)", "aria-label": "gift message" });
    this.result = el("div", { class: "gift-result", id: "gift-result", "aria-live": "polite" });
    this.root.replaceChildren(
      el("div", { class: "gift-head" }, el("strong", {}, "Send a gift"),
        el("span", { class: "gift-wallet" }, "Balance: ", this.balance, " credits")),
      this.list, this.message, this.result);
    this.root.hidden = true;
    this.toggle.addEventListener("click", () => this.setOpen(this.root.hidden));
  }

  async setOpen(open) {
    this.root.hidden = !open;
    this.toggle.setAttribute("aria-expanded", String(open));
    if (open) await Promise.all([this.loadCatalogue(), this.loadWallet()]);
  }

  async loadCatalogue() {
    const { status, data } = await apiGet(`/api/gifts?room=${encodeURIComponent(this.room)}`);
    if (status !== 200) { this.say(data.detail || "The gifts could not be loaded.", true); return; }
    this.list.replaceChildren(...data.gifts.map((g) => {
      const button = el("button", { type: "button", class: `gift-choice tier-${g.tier}`,
        "data-gift": g.gift_id, title: `${g.name}: ${g.price} credits` },
        el("span", { class: "gift-icon" }, giftIcon(g)),
        el("span", { class: "gift-name" }, g.name),
        el("span", { class: "gift-price" }, `${g.price} credits`));
      button.addEventListener("click", () => this.send(g, button));
      return button;
    }));
  }

  async loadWallet() {
    const { status, data } = await apiGet("/api/wallet", this.token);
    if (status === 200) this.balance.textContent = String(data.balance);
  }

  say(text, error = false) {
    this.result.className = "gift-result" + (error ? " error" : " ok");
    this.result.textContent = text;
  }

  async send(gift, button) {
    button.disabled = true;
    const payload = { gift_id: gift.gift_id, count: 1, key: idempotencyKey() };
    const text = this.message.value.trim();
    if (text) payload.message = text;
    const ack = await this.request("gift", payload);
    button.disabled = false;
    if (ack.balance !== undefined) this.balance.textContent = String(ack.balance);
    if (ack.ok) {
      this.message.value = "";
      this.say(`You sent ${gift.name}.`);
    } else {
      const explain = ERRORS[ack.error];
      this.say((explain && explain(ack)) || ack.detail || "The gift was not sent.", true);
    }
  }
}

const DURATION_MS = { 1: 3000, 2: 4000, 3: 6000 };

// Gift animations. Tier 1 and 2 stack in the video's corner, tier 3 takes the whole page; the
// layers never catch a pointer (CSS pointer-events: none), so Buy and the controls stay usable.
// At most `maxOnScreen` play at once (one of tier 3); the rest wait in a bounded queue (the
// oldest is dropped past `maxQueued`). A sender's streak of one gift updates in place.
export class GiftLayer {
  constructor({ corner, full, maxOnScreen = 4, maxQueued = 12 }) {
    Object.assign(this, { corner, full, maxOnScreen, maxQueued });
    this.playing = new Map(); // key -> {node, timer, gift}
    this.queue = [];
    this.dropped = 0;
    this.hidden = new Set(); // message ids a moderator hid
  }

  show(g) {
    const key = `${g.sender.id}/${g.gift_id}`;
    const live = this.playing.get(key);
    if (live) { this.update(live, g); return; }
    const waiting = this.queue.findIndex((q) => `${q.sender.id}/${q.gift_id}` === key);
    if (waiting >= 0) { this.queue[waiting] = g; return; }
    if (this.fits(g)) { this.play(key, g); return; }
    this.queue.push(g);
    if (this.queue.length > this.maxQueued) { this.queue.shift(); this.dropped++; }
  }

  fits(g) {
    if (this.playing.size >= this.maxOnScreen) return false;
    return g.tier < 3 || ![...this.playing.values()].some((p) => p.gift.tier >= 3);
  }

  play(key, g) {
    const tier = Math.min(3, Math.max(1, Number(g.tier) || 1));
    const node = el("div", { class: `gift-anim tier-${tier} anim-${g.animation || "float"}`,
      "data-key": key, "data-gift": g.gift_id, "data-sender": g.sender.id, role: "status" },
      el("span", { class: "gift-icon" }, giftIcon(g)),
      el("span", { class: "gift-text" }), el("span", { class: "gift-message" }));
    const item = { node, timer: 0, gift: g, message: null };
    this.playing.set(key, item);
    (tier === 3 ? this.full : this.corner).append(node);
    this.update(item, g, false);
  }

  update(item, g, bump = true) {
    item.gift = g;
    item.node.querySelector(".gift-text").textContent = giftLine(g);
    // A streak's later events may come without text: the newest message stays.
    const newest = g.message || item.message;
    const message = newest && !this.hidden.has(newest.id) ? newest : null;
    item.message = message;
    const text = item.node.querySelector(".gift-message");
    text.textContent = message ? message.text : "";
    if (message) item.node.dataset.message = message.id; else delete item.node.dataset.message;
    if (bump) { // restart the pop animation
      item.node.classList.remove("bump");
      void item.node.offsetWidth;
      item.node.classList.add("bump");
    }
    clearTimeout(item.timer);
    item.timer = setTimeout(() => this.finish(item), DURATION_MS[item.gift.tier] || DURATION_MS[1]);
  }

  finish(item) {
    item.node.remove();
    this.playing.delete(item.node.dataset.key);
    while (this.queue.length) {
      const i = this.queue.findIndex((q) => this.fits(q));
      if (i < 0) break;
      const [next] = this.queue.splice(i, 1);
      this.play(`${next.sender.id}/${next.gift_id}`, next);
    }
  }

  // A moderator hid a gift's message: its text goes from the screen and from what waits.
  hideMessage(id) {
    this.hidden.add(id);
    for (const item of this.playing.values()) {
      if (item.node.dataset.message === id) {
        item.node.querySelector(".gift-message").textContent = "";
        delete item.node.dataset.message;
        item.message = null;
      }
    }
    for (const g of this.queue) if (g.message && g.message.id === id) g.message = null;
  }
}

// Top gifters: of this show and of all time (credits given), by the names gift events brought,
// else by user id.
export class Leaderboard {
  constructor(root, { room }) {
    this.room = room;
    this.names = new Map();
    this.show = el("ol", { class: "leaders", id: "leaders-show" });
    this.all = el("ol", { class: "leaders", id: "leaders-all" });
    root.replaceChildren(el("h2", {}, "Top gifters"),
      el("div", { class: "leader-cols" },
        el("div", {}, el("h3", {}, "This show"), this.show),
        el("div", {}, el("h3", {}, "All time"), this.all)));
  }

  learn(sender) { this.names.set(sender.id, sender.name); }

  async load() {
    const { status, data } = await apiGet(`/api/rooms/${encodeURIComponent(this.room)}/gifts/leaderboard`);
    if (status === 200) this.render(data);
  }

  render(board) {
    if (board.room !== this.room) return;
    const rows = (list) => (list.length ? list : [null]).map((r, i) => (r
      ? el("li", { "data-user": r.user_id },
        el("span", { class: "who" }, this.names.get(r.user_id) || r.user_id),
        el("span", { class: "credits" }, `${r.credits} credits`))
      : el("li", { class: "empty" }, i === 0 ? "No gifts yet" : "")));
    this.show.replaceChildren(...rows(board.show || []));
    this.all.replaceChildren(...rows(board.all || []));
  }
}
