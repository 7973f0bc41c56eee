// The pinned coupon of the viewer page: what it takes off, a countdown, claims left, and Claim.
// A claimed coupon goes with the next Buy (ProductCard asks `usable()`). Strings through
// textContent only.
"use strict";

import { el } from "/static/chat-client.js";
import { apiPost, formatPrice, idempotencyKey } from "/static/commerce.js";

function clock(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

export class CouponCard {
  // `currency()`: the currency an amount off is shown in (the product's on sale), or null.
  constructor(root, { room, token, currency }) {
    this.root = root;
    this.room = room;
    this.token = token;
    this.currency = currency;
    this.coupon = null;
    this.claimed = new Set(); // coupon ids this page claimed (a claim not yet used)
    this.skew = 0;
    this.busy = false;
    this.build();
    this.timer = setInterval(() => this.tick(), 250);
  }

  build() {
    this.label = el("div", { class: "coupon-label", id: "coupon-label" });
    this.terms = el("div", { class: "coupon-terms", id: "coupon-terms" });
    this.countdown = el("span", { id: "coupon-countdown" });
    this.left = el("span", { id: "coupon-left" });
    this.claim = el("button", { class: "primary", id: "coupon-claim", type: "button" }, "Claim");
    this.result = el("div", { class: "coupon-result", id: "coupon-result", "aria-live": "polite" });
    this.claim.addEventListener("click", () => this.press());
    this.root.replaceChildren(el("div", { class: "coupon-body" }, this.label, this.terms,
      el("div", { class: "sale-line" }, this.countdown, this.left), this.claim, this.result));
  }

  setState(state) {
    this.show(state.pinned_coupon || null);
  }

  listen(socket) {
    socket.on("coupon_pin", ({ room, coupon }) => {
      if (room === this.room) this.show(coupon);
    });
    socket.on("coupon", (data) => {
      if (data.room !== this.room || !this.coupon || data.coupon_id !== this.coupon.coupon_id) return;
      this.coupon = { ...this.coupon, ...data };
      if (data.remaining !== undefined) this.coupon.remaining = Math.min(data.remaining, this.coupon.remaining);
      this.render();
    });
  }

  show(coupon) {
    this.coupon = coupon;
    if (coupon && coupon.server_time) this.skew = coupon.server_time - Date.now();
    this.result.textContent = "";
    this.result.className = "coupon-result";
    this.render();
  }

  // The coupon a Buy should name: the pinned one, once this page claimed it.
  usable() {
    return this.coupon && this.claimed.has(this.coupon.coupon_id) ? this.coupon.coupon_id : null;
  }

  // A Buy answered: a hold used the claim, or the claim is gone (`coupon_used`, `coupon_expired`).
  spent(couponId) {
    this.claimed.delete(couponId);
    this.render();
  }

  off() {
    const c = this.coupon;
    if (c.percent_off) return `${c.percent_off}% off`;
    const currency = this.currency && this.currency();
    return currency ? `${formatPrice(c.amount_off_minor, currency)} off` : `${c.amount_off_minor} off`;
  }

  render() {
    const c = this.coupon;
    this.root.hidden = !c;
    if (!c) return;
    this.label.textContent = `Coupon: ${this.off()}`;
    const terms = [];
    if (c.min_spend_minor) {
      const currency = this.currency && this.currency();
      terms.push(`on orders from ${currency ? formatPrice(c.min_spend_minor, currency) : c.min_spend_minor}`);
    }
    if (c.product_ids && c.product_ids.length) terms.push(`on ${c.product_ids.join(", ")}`);
    this.terms.textContent = terms.join(" · ");
    this.left.textContent = c.remaining > 0 ? `${c.remaining} left` : "All claimed";
    this.tick();
  }

  tick() {
    const c = this.coupon;
    if (!c) return;
    const now = Date.now() + this.skew;
    if (now < c.starts_at) this.countdown.textContent = `starts in ${clock(c.starts_at - now)}`;
    else if (now < c.ends_at) this.countdown.textContent = `ends in ${clock(c.ends_at - now)}`;
    else this.countdown.textContent = "coupon ended";
    const mine = this.claimed.has(c.coupon_id);
    this.claim.textContent = mine ? "Claimed" : "Claim";
    this.claim.disabled = this.busy || mine || c.remaining <= 0 || now < c.starts_at || now >= c.ends_at;
  }

  async press() {
    const c = this.coupon;
    if (!c || this.busy) return;
    this.busy = true;
    this.tick();
    const path = `/api/rooms/${encodeURIComponent(this.room)}/coupons/${encodeURIComponent(c.coupon_id)}/claims`;
    const { status, data } = await apiPost(path, this.token, {}, idempotencyKey());
    this.busy = false;
    if (status === 201) {
      this.claimed.add(c.coupon_id);
      this.coupon = { ...c, remaining: Math.min(c.remaining, data.remaining) };
      this.result.className = "coupon-result ok";
      this.result.textContent = "Claimed — it comes off your next Buy.";
    } else {
      this.result.className = "coupon-result error";
      const messages = {
        quota_exhausted: "Every coupon is taken.",
        claim_limit: "You already claimed this coupon.",
        coupon_not_started: "This coupon has not started yet.",
        coupon_expired: "This coupon has ended.",
      };
      if (data.error === "quota_exhausted") this.coupon = { ...c, remaining: 0 };
      // Claimed before (another tab, a reload): the claim goes with the next Buy all the same.
      if (data.error === "claim_limit") this.claimed.add(c.coupon_id);
      this.result.textContent = messages[data.error] || data.detail || "Something went wrong.";
    }
    this.render();
  }
}
