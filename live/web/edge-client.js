// Which node this viewer uses: GET /api/rooms/{room}/edge?region= (region from the page URL's
// ?region=), asked of the page's own node first, then of nodes that answered before. Socket.IO
// and WHEP both go to the chosen node; when it goes away the page asks again and moves.
"use strict";

const REGION = /^[a-z0-9][a-z0-9-]{0,31}$/;
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
  }

  get url() {
    return this.node ? this.node.url : location.origin;
  }

  // Ask until a node other than `avoid` is offered: a dead node stays in the registry for a few
  // seconds (its TTL). Bounded; keeps the current choice if nothing better comes.
  async choose(avoid = null, tries = 20) {
    const query = this.region ? `?region=${encodeURIComponent(this.region)}` : "";
    const path = `/api/rooms/${encodeURIComponent(this.room)}/edge${query}`;
    for (let i = 0; i < tries; i++) {
      for (const base of this.known) {
        let response;
        try {
          response = await fetch(new URL(path, base), { cache: "no-store" });
        } catch {
          continue; // that node is gone too: ask the next one
        }
        if (response.ok) {
          const node = await response.json();
          if (node.node_id !== avoid) return this.remember(node);
          break; // the registry has not dropped it yet: wait and ask again
        }
        if (response.status >= 400 && response.status < 500) return this.remember(null);
      }
      await sleep(Math.min(2000, 200 * (i + 1)));
    }
    return this.node;
  }

  remember(node) {
    this.node = node;
    if (node && !this.known.includes(node.url)) this.known.push(node.url);
    return node;
  }
}
