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
