// WHIP (RFC 9725) publishing and WHEP playback against a node's /whip and /whep routes.
// No trickle ICE (the server answers PATCH with 405): the offer goes out once gathering is
// complete, and the answer carries all of the server's candidates.
"use strict";

const SDP = "application/sdp";
const GATHER_TIMEOUT_MS = 5000;

// An HTTP error from a WHIP/WHEP endpoint, with the server's `{error, detail}` when it sent one.
export class MediaHttpError extends Error {
  constructor(status, code, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    // 4xx other than 408/429 will fail the same way again; 5xx and network errors may not.
    this.retryable = status === 0 || status === 408 || status === 429 || status >= 500;
  }
}

// `base` is where media is served (this node by default; an edge may hand out another origin).
export function whipUrl(room, base = location.origin) {
  return new URL(`/whip/${encodeURIComponent(room)}`, base).href;
}
export function whepUrl(room, base = location.origin) {
  return new URL(`/whep/${encodeURIComponent(room)}`, base).href;
}

function gatheringComplete(pc, timeoutMs = GATHER_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    // Send what was gathered so far if gathering stalls (an unreachable interface, say).
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() { if (pc.iceGatheringState === "complete") done(); }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function errorOf(response) {
  let code = "http_error";
  let detail = `the server answered ${response.status}`;
  try {
    const body = await response.json();
    code = body.error || code;
    detail = body.detail || detail;
  } catch { /* not JSON: keep the status line */ }
  return new MediaHttpError(response.status, code, detail);
}

// Offer, POST, answer: returns the session's absolute Location URL.
async function negotiate(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc);
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": SDP, Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
    });
  } catch (err) {
    throw new MediaHttpError(0, "network_error", `cannot reach the media server (${err.message})`);
  }
  if (response.status !== 201) throw await errorOf(response);
  const location = response.headers.get("Location");
  const answer = await response.text();
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  return location ? new URL(location, url).href : null;
}

// One WHIP or WHEP session: a peer connection plus the resource that ends it.
class MediaSession {
  constructor(pc, token, onState) {
    this.pc = pc;
    this.token = token;
    this.location = null;
    this.closed = false;
    pc.addEventListener("connectionstatechange", () => {
      if (!this.closed) onState(pc.connectionState);
    });
  }

  async open(url) {
    try {
      this.location = await negotiate(this.pc, url, this.token);
    } catch (err) {
      this.close();
      throw err;
    }
    return this;
  }

  // Ends the session on the server (best effort: it also expires on its own) and locally.
  // The DELETE goes first: closing the peer connection first lets the server see the
  // connection close and drop the session, so the DELETE would then find nothing (404).
  close() {
    if (this.closed) return;
    this.closed = true;
    if (!this.location) {
      this.pc.close();
      return;
    }
    // keepalive lets the DELETE leave even while the page unloads.
    fetch(this.location, {
      method: "DELETE", keepalive: true, headers: { Authorization: `Bearer ${this.token}` },
    }).catch(() => {}).finally(() => this.pc.close());
  }
}

// Publish `stream` to `url` (see whipUrl). `onState` gets the peer connection's state.
export async function publish({ url, token, stream, onState = () => {} }) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  return new MediaSession(pc, token, onState).open(url);
}

// Play `url` (see whepUrl): `onTrack(stream)` gets one MediaStream holding the room's tracks.
export async function play({ url, token, onTrack, onState = () => {} }) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  const stream = new MediaStream();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addEventListener("track", (event) => {
    stream.addTrack(event.track);
    onTrack(stream);
  });
  return new MediaSession(pc, token, onState).open(url);
}

// Frames decoded so far on a session's inbound video (0 before the first).
export async function framesDecoded(session) {
  if (!session || session.closed) return 0;
  let frames = 0;
  (await session.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
  });
  return frames;
}

// RTP packets received so far on all of a session's inbound streams: is anything arriving?
export async function packetsReceived(session) {
  if (!session || session.closed) return 0;
  let packets = 0;
  (await session.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp") packets += s.packetsReceived || 0;
  });
  return packets;
}

// Exponential retry delays with jitter, capped, and a bounded number of attempts.
export class Backoff {
  constructor({ firstMs = 1000, maxMs = 15000, attempts = 8 } = {}) {
    Object.assign(this, { firstMs, maxMs, attempts });
    this.failures = 0;
  }
  get exhausted() { return this.failures >= this.attempts; }
  // The delay before the next attempt, counting this failure.
  next() {
    const base = Math.min(this.maxMs, this.firstMs * 2 ** this.failures);
    this.failures += 1;
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }
  reset() { this.failures = 0; }
}
