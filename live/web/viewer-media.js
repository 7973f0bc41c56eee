// The viewer's stage: plays the room over WHEP while it is live, says so when it is not, and
// retries a failed connection with backoff. `mediaBase(refusal)` names the origin serving media,
// so a page that picks an edge node first can pass its own; `refusal` is the error of the last
// attempt when that node refused the viewer (`full`, `draining`), so it can pick another.
// `onLost(reason)` hears the first sign that the serving node may be gone (presented frames
// stopping for LOST_MS, the peer connection "disconnected" or "failed"), once per session: the
// page checks the node and moves (viewer.js); nothing else changes if it does not.
import { el } from "/static/chat-client.js";
import { Backoff, framesDecoded, packetsReceived, play, whepUrl } from "/static/media-client.js";
import { errorText, onLanguageChange, setPlain, setText } from "/static/i18n.js";

// The stage's note per state (catalogue keys, the page's language: i18n.js).
const NOTES = {
  offline: "stage.offline", connecting: "stage.connecting", ended: "stage.ended", stalled: "stage.stalled",
};
// Answers that mean "this node takes no more viewers": the next attempt may go elsewhere.
const REFUSALS = new Set(["full", "draining"]);
// While live, nothing arriving for STALL_MS shows "stalled"; for RESTART_MS, a new session.
const WATCH_MS = 2000;
const STALL_MS = 5000;
const RESTART_MS = 12000;
// Frames stopping this long after the session presented some: tell onLost. Checked this often.
const LOST_MS = 1000;
const LOST_CHECK_MS = 250;

export class StagePlayer {
  constructor({ stage, room, token, mediaBase = async () => location.origin, onLost = () => {} }) {
    Object.assign(this, { stage, room, token, mediaBase, onLost });
    this.live = false;
    this.everLive = false;
    this.session = null;
    this.refusal = null; // the last attempt's refusal (full, draining), for mediaBase
    this.attempt = 0; // a newer attempt makes older ones' callbacks no-ops
    this.timer = null;
    this.watchTimer = null;
    this.lostTimer = null;
    this.lostAttempt = 0; // the attempt onLost was last called for
    // Presented frames (requestVideoFrameCallback), wall-clock ms: the page's liveness signal.
    this.frames = 0;
    this.lastFrameAt = 0;
    this.firstFrameAt = 0; // the first frame of the stream now attached (0: none yet)
    this.backoff = new Backoff();
    this.video = el("video", { class: "stage-video", autoplay: "", playsinline: "" });
    this.video.muted = true; // browsers only autoplay muted video
    this.badge = setText(el("span", { class: "live-badge" }), "stage.live");
    this.note = stage.querySelector(".placeholder") || el("div", { class: "placeholder" });
    this.noteText = el("p", { class: "note-text" });
    this.retryButton = setText(el("button", { type: "button", class: "primary", onclick: () => this.retryNow() }),
      "stage.tryAgain");
    this.note.replaceChildren(this.noteText, this.retryButton);
    this.unmute = el("button", { type: "button", class: "unmute", onclick: () => this.toggleMute() });
    stage.replaceChildren(this.video, this.badge, this.note, this.unmute);
    this.video.addEventListener("playing", () => { if (this.session) this.show("playing"); });
    this.show("offline");
    this.countFrames();
    onLanguageChange(() => this.renderMute());
  }

  countFrames() {
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    const tick = (now) => {
      const at = performance.timeOrigin + now;
      this.frames += 1;
      this.lastFrameAt = at;
      if (!this.firstFrameAt) this.firstFrameAt = at;
      this.video.requestVideoFrameCallback(tick);
    };
    this.video.requestVideoFrameCallback(tick);
  }

  // The room went live or stopped (the join state, or a Socket.IO `stream` event).
  setLive(live) {
    if (live === this.live && (!live || this.session || this.timer)) return;
    this.live = live;
    if (live) {
      this.everLive = true;
      this.backoff.reset();
      this.connect();
    } else {
      this.teardown();
      this.show(this.everLive ? "ended" : "offline");
    }
  }

  retryNow() {
    this.backoff.reset();
    this.connect();
  }

  async connect() {
    this.teardown();
    const attempt = ++this.attempt;
    this.show("connecting");
    try {
      const url = whepUrl(this.room, await this.mediaBase(this.refusal));
      this.refusal = null;
      const session = await play({
        url, token: this.token,
        onTrack: (stream) => this.attach(attempt, stream),
        onState: (state) => this.onState(attempt, state),
      });
      if (attempt !== this.attempt) { session.close(); return; }
      this.session = session;
      this.watch(attempt);
    } catch (err) {
      if (attempt !== this.attempt) return;
      if (err.retryable === false) this.show("error", err.code ? errorText({ error: err.code, detail: err.message }) : err.message);
      else {
        if (REFUSALS.has(err.code)) this.refusal = err;
        this.retry(err.message);
      }
    }
  }

  attach(attempt, stream) {
    if (attempt !== this.attempt) return;
    if (this.video.srcObject !== stream) {
      this.video.srcObject = stream;
      this.firstFrameAt = 0; // frames from now on are the new session's
    }
    this.video.play().catch(() => {}); // muted autoplay is allowed; the button covers the rest
  }

  onState(attempt, state) {
    if (attempt !== this.attempt) return;
    if (state === "connected") {
      this.backoff.reset();
      if (!this.video.paused && this.video.readyState >= 2) this.show("playing");
    } else if (state === "disconnected") {
      this.show("stalled"); // ICE may recover on its own; "failed" follows if it does not
      this.lost(attempt, "the media connection was interrupted");
    } else if (state === "failed") {
      this.lost(attempt, "the media connection failed");
      if (attempt === this.attempt) this.retry("the connection to the media server failed");
    }
  }

  lost(attempt, reason) {
    if (attempt !== this.attempt || this.lostAttempt === attempt) return;
    this.lostAttempt = attempt;
    this.onLost(reason);
  }

  // A connection can stay "connected" while nothing arrives (the host's uplink froze, an edge
  // lost its upstream): watch the packet count and start over when it stops growing.
  watch(attempt) {
    let last = -1;
    let progressAt = performance.now();
    const check = async () => {
      if (attempt !== this.attempt) return;
      const packets = await packetsReceived(this.session);
      if (attempt !== this.attempt) return;
      const now = performance.now();
      if (packets > last) {
        last = packets;
        progressAt = now;
        if (this.state === "stalled" && this.session.pc.connectionState === "connected") this.show("playing");
      } else if (now - progressAt > RESTART_MS) {
        this.retry("no video arrived");
        return;
      } else if (now - progressAt > STALL_MS && this.state === "playing") {
        this.show("stalled");
      }
      this.watchTimer = setTimeout(check, WATCH_MS);
    };
    this.watchTimer = setTimeout(check, WATCH_MS);
    // Frames presented, then none for LOST_MS: the node may be gone (a host's frozen uplink looks
    // the same here; onLost tells them apart by asking the node).
    const frames = () => {
      if (attempt !== this.attempt) return;
      const since = performance.timeOrigin + performance.now() - this.lastFrameAt;
      if (this.firstFrameAt && since > LOST_MS) this.lost(attempt, "no video frames");
      else this.lostTimer = setTimeout(frames, LOST_CHECK_MS);
    };
    this.lostTimer = setTimeout(frames, LOST_CHECK_MS);
  }

  retry(reason) {
    this.teardown();
    if (!this.live) return;
    if (this.backoff.exhausted) {
      this.show("failed", { key: "stage.failed", args: { reason } });
      return;
    }
    const delay = this.backoff.next();
    this.show("retrying", { key: "stage.retrying", args: { reason, count: Math.ceil(delay / 1000) } });
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, delay);
  }

  teardown() {
    this.attempt += 1;
    clearTimeout(this.timer);
    clearTimeout(this.watchTimer);
    clearTimeout(this.lostTimer);
    this.timer = null;
    if (this.session) this.session.close();
    this.session = null;
  }

  toggleMute() {
    this.video.muted = !this.video.muted;
    if (!this.video.muted) this.video.play().catch(() => {});
    this.renderMute();
  }

  renderMute() {
    const muted = this.video.muted;
    this.unmute.replaceChildren(speaker(muted), setText(el("span"), muted ? "stage.unmute" : "stage.mute"));
    this.unmute.setAttribute("aria-pressed", String(!muted));
  }

  show(state, detail) {
    this.state = state;
    this.stage.dataset.state = state;
    // A catalogue key ({key, args}, or the state's note) follows a language switch; a detail
    // string (a browser's or the server's) is shown as it is.
    if (detail && typeof detail === "object") setText(this.noteText, detail.key, detail.args);
    else if (detail) setPlain(this.noteText, detail);
    else if (NOTES[state]) setText(this.noteText, NOTES[state]);
    else setPlain(this.noteText, "");
    this.retryButton.hidden = state !== "failed" && state !== "retrying";
    this.renderMute();
  }

  framesDecoded() { return framesDecoded(this.session); }
}

// A speaker icon, crossed out when muted (an SVG, as emoji fonts are not everywhere).
function speaker(muted) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const paths = [["M3 9v6h4l5 5V4L7 9H3z", "fill"],
    ...(muted ? [["M16 9l6 6M22 9l-6 6", "stroke"]] : [["M15.5 8.5a5 5 0 0 1 0 7M18.5 5.5a9 9 0 0 1 0 13", "stroke"]])];
  for (const [d, how] of paths) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    path.setAttribute(how === "fill" ? "fill" : "stroke", "currentColor");
    if (how === "fill") path.setAttribute("stroke", "none");
    else { path.setAttribute("fill", "none"); path.setAttribute("stroke-width", "2"); path.setAttribute("stroke-linecap", "round"); }
    svg.append(path);
  }
  return svg;
}
