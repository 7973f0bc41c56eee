// Captions for screen readers (issue 14, accessibility): a visually hidden live region by the
// video (`role="status"`, `aria-live="polite"`) that announces what the host changes in the room:
// a pinned message, the pinned product, a flash sale opening, selling out or ending, a pinned
// coupon. Register after the product and coupon cards' listeners: the coupon's text is read from
// its card once the card has rendered it. Every user-supplied string goes through textContent.
"use strict";

import { formatPrice, setPlain, setText, t } from "/static/i18n.js";

export class Captions {
  constructor(region, { room, product }) {
    Object.assign(this, { region, room, product });
    this.statuses = new Map(); // sale_id -> the last status announced
  }

  say(key, args) { setText(this.region, key, args); }

  listen(socket) {
    socket.on("pinned", ({ message }) => {
      if (message) this.say("captions.message", { name: message.user.name, text: message.text });
    });
    socket.on("product", ({ room, product }) => {
      if (room !== this.room) return;
      if (product) {
        this.say("captions.product",
          { title: product.title, price: formatPrice(product.price_minor, product.currency) });
      } else {
        this.say("captions.productGone");
      }
    });
    socket.on("sale", (sale) => {
      if (sale.room !== this.room) return;
      const seen = this.statuses.get(sale.sale_id);
      const status = sale.status || (seen && seen.status);
      if (!status || (seen && seen.status === status)) return;
      const known = { ...(seen || {}), ...sale, status };
      this.statuses.set(sale.sale_id, known);
      const pinned = this.product();
      const title = known.title
        || (pinned && pinned.product_id === known.product_id ? pinned.title : known.product_id);
      if (status === "active") {
        this.say("captions.saleOpen", { title,
          price: formatPrice(known.price_minor, known.currency),
          left: t("product.left", { count: known.stock_left }) });
      } else if (status === "sold_out") {
        this.say("captions.soldOut", { title });
      } else if (status === "ended") {
        this.say("captions.saleEnded", { title });
      }
    });
    socket.on("coupon_pin", ({ room, coupon }) => {
      const label = document.getElementById("coupon-label");
      if (room === this.room && coupon && label) setPlain(this.region, label.textContent);
    });
  }
}
