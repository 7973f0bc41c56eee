// Host studio: save products, pin one in the room, start flash sales, watch stock live.
"use strict";

import { el, onTokenChange, pageContext } from "/static/chat-client.js";
import { apiPost, formatPrice } from "/static/commerce.js";

const { room } = pageContext();
let { token } = pageContext();
onTokenChange((fresh) => { token = fresh; });
const $ = (id) => document.getElementById(id);
const sales = new Map();
const notice = (text) => { $("commerce-notice").textContent = text; };

function formData(form, numbers) {
  const data = {};
  for (const [k, v] of new FormData(form).entries()) {
    if (v === "") continue;
    data[k] = numbers.includes(k) ? Number(v) : v;
  }
  return data;
}

function renderSales() {
  const items = [...sales.values()].sort((a, b) => b.starts_at - a.starts_at).map((s) => {
    const end = el("button", { class: "small", type: "button" }, "End");
    end.addEventListener("click", async () => {
      const r = await apiPost(`/api/rooms/${encodeURIComponent(room)}/sales/${s.sale_id}/end`, token, {});
      notice(r.status === 200 ? "Sale ended." : r.data.detail);
    });
    return el("li", { "data-sale": s.sale_id },
      el("strong", {}, s.title || s.product_id), ` ${formatPrice(s.price_minor, s.currency)} · `,
      el("span", { class: "stock" }, `${s.stock_left}/${s.quantity} left`), ` · ${s.status} `,
      s.status === "ended" ? "" : end);
  });
  $("sales").replaceChildren(...items);
}

function merge(data) {
  sales.set(data.sale_id, { ...(sales.get(data.sale_id) || {}), ...data });
  renderSales();
}

$("product-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const r = await apiPost("/api/products", token, formData(event.target, ["price_minor"]));
  notice(r.status === 201 ? `Saved ${r.data.title}.` : r.data.detail);
});
$("pin").addEventListener("click", async () => {
  const product_id = $("product-form").elements.product_id.value;
  const r = await apiPost(`/api/rooms/${encodeURIComponent(room)}/pin`, token, { product_id });
  notice(r.status === 200 ? `Pinned ${r.data.product.title}.` : r.data.detail);
});
$("unpin").addEventListener("click", async () => {
  const res = await fetch(`/api/rooms/${encodeURIComponent(room)}/pin`,
    { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
  notice(res.ok ? "Unpinned." : (await res.json()).detail);
});
$("sale-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = formData(event.target, ["quantity", "price_minor", "duration_s", "per_user_limit", "hold_s"]);
  const r = await apiPost(`/api/rooms/${encodeURIComponent(room)}/sales`, token, body);
  if (r.status === 201) { merge(r.data); notice("Sale started."); } else notice(r.data.detail);
});

// The studio's one connection belongs to studio-chat.js (loaded first); listen on it.
const chat = window.liveChat;
window.addEventListener("live:joined", ({ detail: ack }) => {
  for (const s of ack.state.sales || []) merge(s);
});
chat.socket.on("sale", (data) => { if (data.room === room) merge(data); });
chat.socket.on("purchase", ({ user_name, quantity, others }) => {
  $("purchases").textContent = `${user_name}${others ? ` and ${others} others` : ""} bought ${quantity}`;
});

// Coupons: create one, pin it in the room (viewers get a Claim button and a countdown).
const coupons = new Map();
const couponsPath = `/api/rooms/${encodeURIComponent(room)}/coupons`;
function renderCoupons() {
  const items = [...coupons.values()].filter((c) => c.status !== "ended").map((c) => {
    const pin = el("button", { class: "small", type: "button", "data-pin": c.coupon_id }, "Pin");
    pin.addEventListener("click", async () => {
      const r = await apiPost(`/api/rooms/${encodeURIComponent(room)}/coupon-pin`, token, { coupon_id: c.coupon_id });
      notice(r.status === 200 ? "Coupon pinned." : r.data.detail);
    });
    const off = c.percent_off ? `${c.percent_off}% off` : `${c.amount_off_minor} off`;
    return el("li", { "data-coupon": c.coupon_id }, el("strong", {}, off),
      ` · ${c.remaining}/${c.quota} left · ${c.per_user_limit} per buyer `, pin);
  });
  $("coupons").replaceChildren(...items);
}
function mergeCoupon(data) {
  const prev = coupons.get(data.coupon_id);
  if (!prev && data.quota === undefined) return; // a count for a coupon this page never listed
  coupons.set(data.coupon_id, { ...(prev || {}), ...data });
  renderCoupons();
}
async function loadCoupons() {
  const res = await fetch(couponsPath);
  if (res.ok) for (const c of (await res.json()).coupons) mergeCoupon(c);
}
$("coupon-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target.elements;
  const body = { [f.kind.value]: Number(f.value.value), quota: Number(f.quota.value),
                 per_user_limit: Number(f.per_user_limit.value), duration_s: Number(f.duration_s.value) };
  const r = await apiPost(couponsPath, token, body);
  if (r.status === 201) { mergeCoupon(r.data); notice("Coupon created."); } else notice(r.data.detail);
});
$("coupon-unpin").addEventListener("click", async () => {
  const res = await fetch(`/api/rooms/${encodeURIComponent(room)}/coupon-pin`,
    { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
  notice(res.ok ? "Coupon unpinned." : (await res.json()).detail);
});
chat.socket.on("coupon", (data) => { if (data.room === room) mergeCoupon(data); });
loadCoupons();
