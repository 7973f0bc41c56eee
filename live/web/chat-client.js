// Shared page plumbing: token, room, the Socket.IO connection to /live, and history recovery.
// User text is only ever assigned to textContent, never parsed as HTML.
"use strict";

import { errorText, formatTime, t } from "/static/i18n.js";

export function pageContext() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const room = decodeURIComponent(location.pathname.split("/")[2] || "");
  const key = `live-token:${room}`;
  const token = hash.get("token") || sessionStorage.getItem(key) || "";
  if (token) sessionStorage.setItem(key, token);
  return { room, token };
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A time in the page's locale (i18n.js; the browser's before the page picked a language).
export function timeOf(ts) {
  return formatTime(ts);
}

// Connections of this page, for a new token from the embedding shop (see setToken).
const connections = new Set();

// The shop hands a fresh token before the old one runs out: `window.liveSetToken(token)`, or
// from the embedding page `frame.contentWindow.postMessage({type: "live:token", token}, origin)`.
// Pages' other users of the token (REST, WHIP/WHEP) follow the `live:token` event.
window.liveSetToken = (token) => {
  for (const connection of connections) connection.setToken(token);
  window.dispatchEvent(new CustomEvent("live:token", { detail: token }));
};

// Calls `apply` with each new token the shop hands over (for REST and WHIP/WHEP requests).
export function onTokenChange(apply) {
  window.addEventListener("live:token", (event) => apply(event.detail));
}
window.addEventListener("message", (event) => {
  const data = event.data;
  if (event.source !== window.parent || window.parent === window) return;
  if (data && data.type === "live:token" && typeof data.token === "string") {
    window.liveSetToken(data.token);
  }
});

// Connects, joins `room`, and after every reconnect re-joins with the last id seen, so the
// history in the acknowledgement holds exactly the messages missed meanwhile.
export class ChatConnection {
  constructor({ room, token, handlers, onStatus, onJoined, url = "" }) {
    this.room = room;
    this.lastId = null;
    this.seen = new Set();
    this.handlers = handlers;
    this.onStatus = onStatus;
    this.onJoined = onJoined;
    // `url`: another node's base URL (an edge); "" is this page's node.
    this.socket = io(`${url}/live`, { auth: { token }, transports: ["websocket", "polling"] });
    this.socket.on("connect", () => this.join());
    this.socket.on("disconnect", (reason) => {
      if (!this.expired) onStatus("reconnecting", reason); // else the expiry notice stays
    });
    this.socket.on("connect_error", (err) => {
      const data = err && err.data;
      onStatus("error", data && data.error ? errorText(data) : (data && data.detail) || err.message);
    });
    // The token ran out: the server disconnects; a new token (setToken) reconnects.
    this.socket.on("token_expired", () => {
      this.expired = true;
      onStatus("error", t("chat.expired", { defaultValue: "Your session has expired: reload the page." }));
    });
    connections.add(this);
    // While a join is answered, live messages wait behind its history (a message sent meanwhile
    // may come live before the acknowledgement that holds older ones): shown in order.
    this.joining = false;
    this.held = [];
    this.socket.on("chat", (m) => (this.joining ? this.held.push(m) : this.deliver(m)));
    // The node lost its link to other nodes for a while: fetch what was missed.
    this.socket.on("resync", ({ room: r }) => { if (r === this.room) this.join(); });
    for (const [event, fn] of Object.entries(handlers)) {
      if (event !== "chat") this.socket.on(event, fn);
    }
  }

  join() {
    const payload = { room: this.room };
    if (this.lastId) payload.since = this.lastId;
    this.joining = true;
    this.socket.emit("join", payload, (ack) => {
      this.joining = false;
      const held = this.held.splice(0);
      if (!ack || !ack.ok) {
        for (const m of held) this.deliver(m);
        this.onStatus("error", errorText(ack || { error: "timeout" }));
        return;
      }
      this.onStatus("live", "");
      const fresh = this.lastId === null;
      for (const m of ack.history) this.deliver(m);
      for (const m of held) this.deliver(m);
      this.onJoined(ack, fresh);
    });
  }

  deliver(message) {
    if (message.room !== this.room || this.seen.has(message.id)) return;
    this.seen.add(message.id);
    this.lastId = message.id;
    this.handlers.chat(message);
  }

  setToken(token) {
    this.socket.auth = { token };
    sessionStorage.setItem(`live-token:${this.room}`, token);
    if (this.socket.connected) {
      this.socket.emit("refresh_token", { token }, (ack) => {
        if (ack && !ack.ok) this.onStatus("error", ack.detail);
      });
    } else if (this.expired) {
      this.expired = false;
      this.socket.connect();
    }
  }

  request(event, payload) {
    return new Promise((resolve) => {
      this.socket.timeout(5000).emit(event, { room: this.room, ...payload }, (err, ack) => {
        resolve(err ? { ok: false, error: "timeout", detail: "the server did not answer" } : ack);
      });
    });
  }
}
