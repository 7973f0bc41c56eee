// The product card of the viewer page: pinned product, flash-sale price, countdown, stock left,
// and Buy with a clear result. Every user-supplied string goes through textContent only.
"use strict";

import { el } from "/static/chat-client.js";
import { errorText, formatPrice, setText, t } from "/static/i18n.js";

// Prices in the page's locale (i18n.js), in the product's currency.
export { formatPrice };

export function idempotencyKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `k${Date.now().toString(36)}${Math.random().toString(36).slice(2, 12)}`;
}

function clock(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

// POST with an Idempotency-Key; retried with the same key when the store was briefly away.
export async function apiPost(path, token, body, key) {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const res = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}`,
                   ...(key ? { "Idempotency-Key": key } : {}) },
        body: JSON.stringify(body),
      });
      const data = await res.json().catch(() => ({ error: "bad_answer", detail: "unexpected answer" }));
      if (res.status !== 503 || attempt === 2) return { status: res.status, data, headers: res.headers };
    } catch (err) {
      if (attempt === 2) return { status: 0, data: { error: "network", detail: String(err) } };
    }
    await new Promise((r) => setTimeout(r, 300 * (attempt + 1)));
  }
  return { status: 0, data: { error: "network", detail: "no answer" } };
}

export class ProductCard {
  // `coupon`: the page's coupon card (CouponCard): a claimed coupon goes with a Buy.
  constructor(root, { room, token, coupon }) {
    this.root = root;
    this.room = room;
    this.token = token;
    this.coupon = coupon || null;
    this.product = null;
    this.sales = new Map();
    this.skew = 0;
    this.busy = false;
    this.build();
    this.timer = setInterval(() => this.tick(), 250);
  }

  build() {
    this.title = el("div", { class: "product-title", id: "product-title" });
    this.price = el("div", { class: "product-price", id: "product-price" });
    this.countdown = el("span", { id: "sale-countdown" });
    this.stock = el("span", { id: "sale-stock" });
    this.buy = setText(el("button", { class: "primary", id: "buy", type: "button" }), "product.buy");
    this.result = el("div", { class: "buy-result", id: "buy-result", "aria-live": "polite" });
    this.notice = el("div", { class: "purchase-notice", id: "purchase-notice" });
    this.image = el("img", { class: "product-image", alt: "" });
    this.buy.addEventListener("click", () => this.purchase());
    this.root.replaceChildren(this.image, el("div", { class: "product-body" },
      this.title, this.price, el("div", { class: "sale-line" }, this.countdown, this.stock),
      this.buy, this.result, this.notice));
  }

  setState(state) {
    this.product = state.pinned_product || null;
    this.sales = new Map((state.sales || []).map((s) => [s.sale_id, s]));
    this.sync();
    this.render();
  }

  listen(socket) {
    this.socket = socket; // Buy goes over it while it is connected
    socket.on("product", ({ room, product }) => {
      if (room !== this.room) return;
      this.product = product;
      this.render();
    });
    socket.on("sale", (data) => {
      if (data.room !== this.room) return;
      const prev = this.sales.get(data.sale_id) || {};
      this.sales.set(data.sale_id, { ...prev, ...data });
      this.sync();
      this.render();
    });
    socket.on("purchase", ({ room, user_name, quantity, others }) => {
      if (room !== this.room) return;
      if (others > 0) setText(this.notice, "product.boughtOthers", { name: user_name, count: others, quantity });
      else setText(this.notice, "product.bought", { name: user_name, quantity });
    });
  }

  sync() {
    for (const s of this.sales.values()) {
      if (s.server_time) this.skew = s.server_time - Date.now();
    }
  }

  // The sale to show: the newest one not ended, preferring the pinned product's.
  current() {
    const open = [...this.sales.values()].filter((s) => s.status !== "ended" && s.ends_at);
    open.sort((a, b) => b.starts_at - a.starts_at);
    return open.find((s) => this.product && s.product_id === this.product.product_id) || open[0] || null;
  }

  render() {
    const sale = this.current();
    const product = this.product;
    this.root.hidden = !product && !sale;
    if (this.root.hidden) return;
    this.title.textContent = product && (!sale || sale.product_id === product.product_id)
      ? product.title : (sale.title || sale.product_id);
    if (product && product.image_url) this.image.src = product.image_url;
    this.image.hidden = !(product && product.image_url);
    if (sale) {
      const was = product && product.product_id === sale.product_id && product.price_minor !== sale.price_minor
        ? ` ${t("product.was", { price: formatPrice(product.price_minor, product.currency) })}` : "";
      this.price.textContent = formatPrice(sale.price_minor, sale.currency) + was;
      this.stock.textContent = sale.status === "sold_out" || sale.stock_left === 0
        ? t("product.soldOut") : t("product.left", { count: sale.stock_left });
    } else {
      this.price.textContent = formatPrice(product.price_minor, product.currency);
      this.stock.textContent = "";
    }
    this.tick();
  }

  tick() {
    const sale = this.current();
    const now = Date.now() + this.skew;
    if (!sale) {
      this.countdown.textContent = "";
      this.buy.disabled = true;
      return;
    }
    if (sale.status === "scheduled" && now < sale.starts_at) {
      this.countdown.textContent = t("product.startsIn", { time: clock(sale.starts_at - now) });
    } else if (now < sale.ends_at) {
      this.countdown.textContent = t("product.endsIn", { time: clock(sale.ends_at - now) });
    } else {
      this.countdown.textContent = t("product.ended");
    }
    // A scheduled sale opens at starts_at without another event (as the reservation script decides).
    const started = sale.status === "active" || (sale.status === "scheduled" && now >= sale.starts_at);
    const open = started && now >= sale.starts_at && now < sale.ends_at && sale.stock_left > 0;
    this.buy.disabled = this.busy || !open;
  }

  // Over the live connection while it is up (`buy`: no HTTP request per press), else over HTTP.
  // One key for both: an attempt whose socket answer never came (a timeout, a drop, a join not yet
  // answered after a reconnect) is asked again over HTTP and replayed, never bought twice.
  async reserve(saleId, body, key) {
    const socket = this.socket;
    if (socket && socket.connected) {
      const ack = await new Promise((resolve) => {
        socket.timeout(5000).emit("buy", { room: this.room, sale_id: saleId, key, ...body },
          (err, answer) => resolve(err ? null : answer));
      });
      const retry = !ack || ["not_joined", "not_connected", "store_unavailable", "token_expired",
        "internal"].includes(ack.error);
      if (!retry) return { status: ack.ok ? 201 : 0, data: ack, via: "socket" };
    }
    const path = `/api/rooms/${encodeURIComponent(this.room)}/sales/${encodeURIComponent(saleId)}/reservations`;
    return { ...(await apiPost(path, this.token, body, key)), via: "http" };
  }

  async purchase() {
    const sale = this.current();
    if (!sale || this.busy) return;
    this.busy = true;
    this.tick();
    this.result.className = "buy-result";
    setText(this.result, "product.reserving");
    const couponId = this.coupon && this.coupon.usable();
    const body = couponId ? { quantity: 1, coupon_id: couponId } : { quantity: 1 };
    const { status, data, via } = await this.reserve(sale.sale_id, body, idempotencyKey());
    this.busy = false;
    this.result.dataset.via = via;
    if (couponId && (status === 201 || ["coupon_used", "coupon_expired"].includes(data.error))) {
      this.coupon.spent(couponId);
    }
    if (status === 201) {
      this.result.className = "buy-result ok";
      this.result.dataset.reservation = data.reservation_id;
      const left = data.expires_at - (Date.now() + this.skew);
      const args = { count: data.quantity, time: clock(left) };
      if (data.coupon_id) {
        setText(this.result, "product.reservedCoupon", { ...args,
          total: formatPrice(data.total_minor, data.currency),
          discount: formatPrice(data.discount_minor, data.currency) });
      } else {
        setText(this.result, "product.reserved", args);
      }
      this.sales.set(sale.sale_id, { ...sale, stock_left: data.stock_left });
    } else {
      this.result.className = "buy-result error";
      // The code's message in the page's language (the server's English detail otherwise).
      setText(this.result, data.error ? `errors.${data.error}` : "errors.unknown",
        { balance: data.balance ?? 0, defaultValue: errorText(data) });
    }
    this.render();
  }
}
