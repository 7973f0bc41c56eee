// The studio's gifts: earnings as the server reports them (GET /api/wallet, read again after the
// room's `gift` and `leaderboard` events), the gifts received live, and the top gifters.
"use strict";

import { el, onTokenChange, pageContext, timeOf } from "/static/chat-client.js";
import { Leaderboard, apiGet, giftIcon, giftLine } from "/static/gifts.js";

const { room } = pageContext();
let { token } = pageContext();
onTokenChange((fresh) => { token = fresh; });
const $ = (id) => document.getElementById(id);
const RECEIVED = 50; // gifts listed, newest first
const leaderboard = new Leaderboard($("leaderboard"), { room });

// One read at a time; events meanwhile ask for one more after it.
let reading = null;
let again = false;
async function readEarnings() {
  if (reading) { again = true; return reading; }
  reading = (async () => {
    do {
      again = false;
      const { status, data } = await apiGet("/api/wallet", token);
      if (status === 200) {
        $("earned").textContent = String(data.earned);
        $("platform-share").textContent = String(data.platform_share);
      }
    } while (again);
  })().finally(() => { reading = null; });
  return reading;
}

const received = $("gifts-received");
function renderGift(g) {
  const key = `${g.sender.id}/${g.gift_id}`;
  const message = el("span", { class: "gift-message" }, g.message ? g.message.text : "");
  if (g.message) message.dataset.message = g.message.id;
  const item = el("li", { "data-key": key },
    el("span", { class: "ts" }, timeOf(Date.now())), ` ${giftIcon(g)} `,
    el("span", { class: "gift-text" }, giftLine(g)), message);
  // A streak updates its line in place while it is the newest.
  const first = received.firstElementChild;
  if (first && first.dataset.key === key && !g.message) {
    first.querySelector(".gift-text").textContent = giftLine(g);
    return;
  }
  received.prepend(item);
  while (received.children.length > RECEIVED) received.lastElementChild.remove();
}

const chat = window.liveChat; // studio-chat.js's connection
window.addEventListener("live:joined", () => { readEarnings(); leaderboard.load(); });
chat.socket.on("gift", (g) => {
  if (g.room !== room) return;
  leaderboard.learn(g.sender);
  renderGift(g);
  readEarnings();
});
chat.socket.on("leaderboard", (board) => { leaderboard.render(board); readEarnings(); });
chat.socket.on("deleted", ({ message_id }) => {
  for (const node of received.querySelectorAll(".gift-message[data-message]")) {
    if (node.dataset.message === message_id) { node.textContent = ""; delete node.dataset.message; }
  }
});
readEarnings();
leaderboard.load();
