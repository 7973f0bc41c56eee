// Host studio, the shop desk's figures: viewers, buyers and conversion, units held and sold,
// revenue per currency, coupon use and top products. Read once (GET /api/rooms/{room}/desk),
// then from the `desk` events the server pushes to the room's staff (at most one a second)
// and the room's `viewers` events.
"use strict";

import { el, onTokenChange, pageContext } from "/static/chat-client.js";
import { formatPrice } from "/static/commerce.js";
import { apiGet } from "/static/gifts.js";
import { formatNumber, onLanguageChange, t } from "/static/i18n.js";

// The module's words (the page's language: i18n.js).
const TEXT = {
  none: "–",
  conversion: (c) => t("studio.desk.conversion", {
    percent: formatNumber(c * 100, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) }),
  held: (money) => t("studio.desk.held", { money }),
  units: (n) => t("studio.desk.units", { count: n }),
  claimsUses: (c) => `${formatNumber(c.claims)} · ${formatNumber(c.uses)}`,
};

const { room } = pageContext();
let { token } = pageContext();
onTokenChange((fresh) => { token = fresh; });
const $ = (id) => document.getElementById(id);
let titles = new Map();
let last = null;
let liveViewers = null; // from the room's `viewers` events and the join: fresher than a desk read
const showViewers = (n) => { liveViewers = n; $("desk-viewers").textContent = String(n); };

const money = (perCurrency) => Object.entries(perCurrency || {})
  .filter(([, minor]) => minor).map(([cur, minor]) => formatPrice(minor, cur)).join(" · ");

function render(d) {
  last = d;
  $("desk-viewers").textContent = String(liveViewers ?? d.viewers);
  $("desk-buyers").textContent = String(d.buyers);
  $("desk-conversion").textContent = d.conversion === null ? TEXT.none : TEXT.conversion(d.conversion);
  $("desk-held").textContent = String(d.units_held);
  const held = money(d.held_minor);
  $("desk-held-value").textContent = held ? TEXT.held(held) : "";
  $("desk-sold").textContent = String(d.units_sold);
  $("desk-revenue").textContent = money(d.revenue_minor) || TEXT.none;
  $("desk-top").replaceChildren(...d.top_products.map((p) => el("li", { "data-product": p.product_id },
    el("span", {}, titles.get(p.product_id)?.title || p.product_id), " ", el("span", { class: "desk-sub" }, TEXT.units(p.units)))));
  $("desk-coupons").replaceChildren(...d.coupons.map((c) => el("li", { "data-coupon": c.coupon_id },
    el("code", {}, c.coupon_id), " ", TEXT.claimsUses(c))));
}

async function read() {
  const { status, data } = await apiGet(`/api/rooms/${encodeURIComponent(room)}/desk`, token);
  if (status === 200 && (!last || data.ts >= last.ts)) render(data);
}

onLanguageChange(() => { if (last) render(last); });
window.addEventListener("live:catalogue", ({ detail }) => { titles = detail; if (last) render(last); });
const chat = window.liveChat;
chat.socket.on("desk", (data) => { if (data.room === room && (!last || data.ts >= last.ts)) render(data); });
chat.socket.on("viewers", ({ room: r, count }) => { if (r === room) showViewers(count); });
window.addEventListener("live:joined", ({ detail: ack }) => {
  if (typeof ack.state.viewers === "number") showViewers(ack.state.viewers);
  read(); // again after a reconnect
});
read();
