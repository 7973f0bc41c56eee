// Which node this viewer uses: GET /api/rooms/{room}/edge?region= (region from the page URL's
// ?region=), asked of the page's own node first, then of nodes that answered before. Socket.IO
// and WHEP both go to the chosen node; when it goes away the page asks again, excluding it
// (`?exclude=`: the registry lists a killed node until its TTL runs out), and moves.
"use strict";

const REGION = /^[a-z0-9][a-z0-9-]{0,31}$/;
const DEAD_MS = 30000; // a node found dead is excluded from selection this long
const MAX_EXCLUDE = 8; // the route's bound
const ASK_TIMEOUT_MS = 2000; // a node that does not answer a selection request in time is skipped
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function pageRegion() {
  const region = new URLSearchParams(location.search).get("region");
  return region && REGION.test(region) ? region : "";
}

export class EdgeSelector {
  constructor({ room, region }) {
    this.room = room;
    this.region = region;
    this.node = null; // {node_id, region, url, reason}; null: this page's own node
    this.known = [location.origin]; // where to ask
    this.dead = new Map(); // node id -> {url, at}: found dead by this page
  }

  get url() {
    return this.node ? this.node.url : location.origin;
  }

  // The node `node` (a choice) stopped answering: never offered again for a while, not asked.
  markDead(node) {
    if (!node) return;
    this.dead.set(node.node_id, { url: node.url, at: Date.now() });
  }

  excluded() {
    const now = Date.now();
    for (const [id, { at }] of this.dead) if (now - at > DEAD_MS) this.dead.delete(id);
    return [...this.dead.keys()].slice(-MAX_EXCLUDE);
  }

  // Does the node at `url` answer at all? Any HTTP answer counts (no-cors: the body is not
  // read); a refused connection fails at once, a silent one after `timeoutMs`.
  async alive(url, timeoutMs = 1000) {
    try {
      await fetch(new URL("/healthz", url), {
        mode: "no-cors", cache: "no-store", signal: AbortSignal.timeout(timeoutMs),
      });
      return true;
    } catch {
      return false;
    }
  }

  // Ask until a node other than `avoid` is offered (a draining node leaves selection at once, a
  // dead one only when excluded or when its TTL runs out). The first round goes out at once;
  // repeated failures back off. Bounded; keeps the current choice if nothing better comes.
  async choose({ avoid = null, tries = 20 } = {}) {
    for (let i = 0; i < tries; i++) {
      const query = new URLSearchParams();
      if (this.region) query.set("region", this.region);
      const exclude = this.excluded();
      if (exclude.length) query.set("exclude", exclude.join(","));
      const path = `/api/rooms/${encodeURIComponent(this.room)}/edge?${query}`;
      const deadUrls = new Set([...this.dead.values()].map((d) => d.url));
      for (const base of this.known.filter((b) => !deadUrls.has(b) || b === location.origin)) {
        let response;
        try {
          response = await fetch(new URL(path, base), {
            cache: "no-store", signal: AbortSignal.timeout(ASK_TIMEOUT_MS),
          });
        } catch {
          continue; // that node is gone too: ask the next one
        }
        if (response.ok) {
          const node = await response.json();
          if (node.node_id !== avoid) return this.remember(node);
          break; // the registry still offers it (not known dead here): wait and ask again
        }
        if (response.status >= 400 && response.status < 500) return this.remember(null);
      }
      if (i + 1 < tries) await sleep(Math.min(2000, 200 * (i + 1)));
    }
    return this.node;
  }

  remember(node) {
    this.node = node;
    if (node) {
      this.dead.delete(node.node_id);
      if (!this.known.includes(node.url)) this.known.push(node.url);
    }
    return node;
  }
}
