// Host studio, the shop desk's catalogue: the seller's products with images and prices in major
// units; one click pins a product, one click starts a flash sale prefilled from it (price,
// quantity and per-buyer limit editable inline); products saved and coupons created and pinned
// from the same place; flash sales' stock live.
"use strict";

import { el, onTokenChange, pageContext } from "/static/chat-client.js";
import { apiPost, formatPrice } from "/static/commerce.js";
import { apiGet } from "/static/gifts.js";
import { errorText, formatNumber, onLanguageChange, setPlain, setText, t } from "/static/i18n.js";

// The module's words (the page's language: i18n.js).
const TEXT = {
  end: () => t("studio.end"),
  pin: () => t("studio.pin"),
  startSale: () => t("studio.startSale"),
  salePrice: () => t("studio.salePrice"),
  quantity: () => t("studio.quantity"),
  limit: () => t("studio.perBuyer"),
  noProducts: () => t("studio.noProducts"),
  left: (s) => t("studio.stockLeft", { left: s.stock_left, quantity: s.quantity }),
  status: (s) => t(`studio.saleStatus.${s.status}`, { defaultValue: s.status }),
  percentOff: (p) => t("coupon.percentOff", { percent: formatNumber(p) }),
  amountOff: (text) => t("coupon.amountOff", { amount: text }),
  couponTerms: (c) => ` · ${t("studio.couponTerms", { remaining: c.remaining, quota: c.quota,
    limit: c.per_user_limit })} `,
};

const { room } = pageContext();
let { token } = pageContext();
onTokenChange((fresh) => { token = fresh; });
const $ = (id) => document.getElementById(id);
const roomPath = `/api/rooms/${encodeURIComponent(room)}`;
const sales = new Map();
const products = new Map();
// A notice from the catalogue (`key`, `args`) or the message for an error answer's code.
const notice = (key, args) => setText($("commerce-notice"), key, args);
const refused = (data) => setPlain($("commerce-notice"), errorText(data));

// ISO 4217 minor units as the browser's Intl knows them (JPY 0, EUR 2, KWD 3).
function digitsOf(currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    return 2;
  }
}
const toMinor = (major, currency) => Math.round(Number(major) * 10 ** digitsOf(currency));
const toMajor = (minor, currency) => (minor / 10 ** digitsOf(currency)).toFixed(digitsOf(currency));

// The catalogue: one row per product, its sale fields prefilled.
function numberInput(name, value, attrs = {}) {
  return el("input", { name, type: "number", value: String(value), required: "", ...attrs });
}

function productRow(p) {
  const step = String(10 ** -digitsOf(p.currency));
  const price = numberInput("price", toMajor(p.price_minor, p.currency), { min: "0", step, "aria-label": TEXT.salePrice() });
  const quantity = numberInput("quantity", 100, { min: "1", "aria-label": TEXT.quantity() });
  const limit = numberInput("per_user_limit", 1, { min: "1", max: "1000", "aria-label": TEXT.limit() });
  const pin = el("button", { type: "button", class: "small", "data-action": "pin" }, TEXT.pin());
  const sell = el("button", { type: "button", class: "small primary", "data-action": "sale" }, TEXT.startSale());
  pin.addEventListener("click", async () => {
    const r = await apiPost(`${roomPath}/pin`, token, { product_id: p.product_id });
    if (r.status === 200) notice("studio.pinned", { title: r.data.product.title }); else refused(r.data);
  });
  sell.addEventListener("click", async () => {
    const body = {
      product_id: p.product_id, price_minor: toMinor(price.value, p.currency),
      quantity: Number(quantity.value), per_user_limit: Number(limit.value),
      duration_s: Number($("sale-duration").value), hold_s: Number($("sale-hold").value),
    };
    const r = await apiPost(`${roomPath}/sales`, token, body);
    if (r.status === 201) { merge(r.data); notice("studio.saleStarted", { title: p.title }); } else refused(r.data);
  });
  const image = p.image_url
    ? el("img", { class: "product-image", src: p.image_url, alt: "" })
    : el("div", { class: "product-image placeholder" });
  return el("li", { "data-product": p.product_id }, image,
    el("div", { class: "catalogue-body" },
      el("strong", { class: "catalogue-title" }, p.title),
      el("span", { class: "catalogue-price" }, formatPrice(p.price_minor, p.currency)),
      el("div", { class: "catalogue-sale" },
        el("label", {}, `${TEXT.salePrice()} (${p.currency})`, price),
        el("label", {}, TEXT.quantity(), quantity), el("label", {}, TEXT.limit(), limit))),
    el("div", { class: "catalogue-actions" }, pin, sell));
}

async function loadCatalogue() {
  const { status, data } = await apiGet(`${roomPath}/products`, token);
  if (status !== 200) { refused(data); return; }
  products.clear();
  for (const p of data.products) products.set(p.product_id, p);
  renderCatalogue();
  window.dispatchEvent(new CustomEvent("live:catalogue", { detail: products }));
}
function renderCatalogue() {
  const rows = [...products.values()].map(productRow);
  $("catalogue").replaceChildren(...(rows.length ? rows : [el("li", { class: "empty" }, TEXT.noProducts())]));
}

$("product-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target.elements;
  const currency = f.currency.value;
  const body = { product_id: f.product_id.value, title: f.title.value, currency,
                 price_minor: toMinor(f.price.value, currency) };
  if (f.image_url.value) body.image_url = f.image_url.value;
  const r = await apiPost("/api/products", token, body);
  if (r.status === 201) { notice("studio.saved", { title: r.data.title }); await loadCatalogue(); } else refused(r.data);
});
$("unpin").addEventListener("click", async () => {
  const res = await fetch(`${roomPath}/pin`, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
  if (res.ok) notice("studio.unpinned"); else refused(await res.json());
});

// Flash sales, live.
function renderSales() {
  const items = [...sales.values()].sort((a, b) => b.starts_at - a.starts_at).map((s) => {
    const end = el("button", { class: "small", type: "button" }, TEXT.end());
    end.addEventListener("click", async () => {
      const r = await apiPost(`${roomPath}/sales/${s.sale_id}/end`, token, {});
      if (r.status === 200) notice("studio.saleEnded"); else refused(r.data);
    });
    return el("li", { "data-sale": s.sale_id },
      el("strong", {}, s.title || s.product_id), ` ${formatPrice(s.price_minor, s.currency)} · `,
      el("span", { class: "stock" }, TEXT.left(s)), ` · ${TEXT.status(s)} `,
      s.status === "ended" ? "" : end);
  });
  $("sales").replaceChildren(...items);
}

function merge(data) {
  sales.set(data.sale_id, { ...(sales.get(data.sale_id) || {}), ...data });
  renderSales();
}

// The studio's one connection belongs to studio-chat.js (loaded first); listen on it.
const chat = window.liveChat;
window.addEventListener("live:joined", ({ detail: ack }) => {
  for (const s of ack.state.sales || []) merge(s);
});
chat.socket.on("sale", (data) => { if (data.room === room) merge(data); });
chat.socket.on("purchase", ({ user_name, quantity, others }) => {
  if (others) setText($("purchases"), "product.boughtOthers", { name: user_name, count: others, quantity });
  else setText($("purchases"), "product.bought", { name: user_name, quantity });
});

// Coupons: create one, pin it in the room (viewers get a Claim button and a countdown). An
// amount off is in the catalogue's currency (its first product's), in major units.
const coupons = new Map();
const couponsPath = `${roomPath}/coupons`;
const couponCurrency = () => (products.values().next().value || { currency: "EUR" }).currency;
function renderCoupons() {
  const items = [...coupons.values()].filter((c) => c.status !== "ended").map((c) => {
    const pin = el("button", { class: "small", type: "button", "data-pin": c.coupon_id }, TEXT.pin());
    pin.addEventListener("click", async () => {
      const r = await apiPost(`${roomPath}/coupon-pin`, token, { coupon_id: c.coupon_id });
      if (r.status === 200) notice("studio.couponPinned"); else refused(r.data);
    });
    const off = c.percent_off ? TEXT.percentOff(c.percent_off)
      : TEXT.amountOff(formatPrice(c.amount_off_minor, couponCurrency()));
    return el("li", { "data-coupon": c.coupon_id }, el("strong", {}, off), TEXT.couponTerms(c), pin);
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
const couponForm = $("coupon-form");
couponForm.elements.kind.addEventListener("change", () => {
  $("coupon-unit").textContent = couponForm.elements.kind.value === "percent_off" ? "%" : couponCurrency();
});
couponForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target.elements;
  const value = f.kind.value === "percent_off" ? Number(f.value.value) : toMinor(f.value.value, couponCurrency());
  const body = { [f.kind.value]: value, quota: Number(f.quota.value),
                 per_user_limit: Number(f.per_user_limit.value), duration_s: Number(f.duration_s.value) };
  const r = await apiPost(couponsPath, token, body);
  if (r.status === 201) { mergeCoupon(r.data); notice("studio.couponCreated"); } else refused(r.data);
});
$("coupon-unpin").addEventListener("click", async () => {
  const res = await fetch(`${roomPath}/coupon-pin`, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
  if (res.ok) notice("studio.couponUnpinned"); else refused(await res.json());
});
chat.socket.on("coupon", (data) => { if (data.room === room) mergeCoupon(data); });
// A language switch: the rows this module renders itself (the keyed elements follow by themselves).
onLanguageChange(() => { renderCatalogue(); renderSales(); renderCoupons(); });
loadCatalogue().then(loadCoupons);
