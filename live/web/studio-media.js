// The studio's camera: preview from getUserMedia, Go live / Stop over WHIP, connection state,
// and a new WHIP session with backoff when a live connection fails.
import { onTokenChange, pageContext } from "/static/chat-client.js";
import { Backoff, publish, whipUrl } from "/static/media-client.js";
import { setPlain, setText, t } from "/static/i18n.js";

const { room } = pageContext();
let { token } = pageContext();
onTokenChange((fresh) => { token = fresh; });
const $ = (id) => document.getElementById(id);
const stage = $("preview-stage");
const preview = $("preview");
const goLive = $("go-live");
const stopButton = $("stop");
const micButton = $("mic");

const CONSTRAINTS = {
  video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
  audio: { echoCancellation: true, noiseSuppression: true },
};
// The media pill per state: its label (studio.media.<state>) and class.
const PILL = {
  offline: "", connecting: "connecting", live: "live", reconnecting: "connecting", failed: "error",
};

export const studio = {
  stream: null,
  session: null,
  wanted: false, // the host asked to be live and has not pressed Stop
  attempt: 0,
  timer: null,
  tickTimer: null,
  liveSince: 0,
  state: "offline",
  backoff: new Backoff({ attempts: 6 }),
  mediaBase: async () => location.origin,
};
window.liveStudio = studio; // for tests

// The detail line: a catalogue key with its arguments (re-rendered on a language switch), or a
// text that is not in the catalogue (a browser's error message).
function detail(text) {
  if (text && typeof text === "object") setText($("media-detail"), text.key, text.args);
  else setPlain($("media-detail"), text);
}
const say = (key, args) => ({ key, args });

function setState(state, text) {
  studio.state = state;
  const cls = PILL[state];
  const pill = $("media-state");
  setText(pill, `studio.media.${state}`);
  pill.className = "pill" + (cls ? ` ${cls}` : "");
  stage.dataset.state = !studio.stream ? stage.dataset.state : state === "live" ? "live" : "ready";
  goLive.disabled = !studio.stream || studio.wanted;
  stopButton.disabled = !studio.wanted;
  if (text !== undefined) detail(text);
}

async function startCamera() {
  $("camera-retry").hidden = true;
  setText($("preview-note"), "studio.media.starting");
  stage.dataset.state = "starting";
  try {
    studio.stream = await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
  } catch (err) {
    const why = err.name === "NotAllowedError" ? t("studio.media.refused") : err.message || err.name;
    setText($("preview-note"), "studio.media.unavailable", { why });
    $("camera-retry").hidden = false;
    stage.dataset.state = "error";
    detail(say("studio.media.allow"));
    return;
  }
  preview.srcObject = studio.stream;
  micButton.disabled = studio.stream.getAudioTracks().length === 0;
  const video = studio.stream.getVideoTracks()[0];
  const settings = video ? video.getSettings() : {};
  setState("offline", video ? say("studio.media.ready", { width: settings.width, height: settings.height })
    : say("studio.media.noCamera"));
}

async function connect() {
  clearTimeout(studio.timer);
  studio.timer = null;
  const attempt = ++studio.attempt;
  setState(studio.backoff.failures ? "reconnecting" : "connecting", say("studio.media.connectingDetail"));
  try {
    const url = whipUrl(room, await studio.mediaBase());
    const session = await publish({
      url, token, stream: studio.stream, onState: (s) => onState(attempt, s),
    });
    if (attempt !== studio.attempt || !studio.wanted) { session.close(); return; }
    studio.session = session;
  } catch (err) {
    if (attempt !== studio.attempt) return;
    if (err.retryable === false) {
      const text = err.code === "already_live" || err.code === "publisher_exists"
        ? say("studio.media.liveElsewhere")
        : err.code === "forbidden" ? say("studio.media.notAllowed") : err.message;
      stop(text, "failed");
    } else {
      retry(err.message);
    }
  }
}

function onState(attempt, state) {
  if (attempt !== studio.attempt) return;
  if (state === "connected") {
    studio.backoff.reset();
    studio.liveSince = Date.now();
    setState("live", say("studio.media.youAreLive"));
    tick();
  } else if (state === "disconnected") {
    setState("reconnecting", say("studio.media.interrupted"));
  } else if (state === "failed") {
    retry(t("studio.media.failedReason"));
  }
}

function retry(reason) {
  closeSession();
  if (!studio.wanted) return;
  if (studio.backoff.exhausted) {
    stop(say("studio.media.couldNotGoLive", { reason }), "failed");
    return;
  }
  const delay = studio.backoff.next();
  setState("reconnecting", say("studio.media.retrying", { reason, count: Math.ceil(delay / 1000) }));
  studio.timer = setTimeout(connect, delay);
}

function closeSession() {
  studio.attempt += 1;
  if (studio.session) studio.session.close();
  studio.session = null;
}

function stop(text = say("studio.media.notLive"), state = "offline") {
  studio.wanted = false;
  clearTimeout(studio.timer);
  studio.timer = null;
  closeSession();
  setState(state, text);
}

function tick() {
  clearTimeout(studio.tickTimer);
  if (studio.state !== "live") { $("elapsed").textContent = ""; return; }
  const s = Math.floor((Date.now() - studio.liveSince) / 1000);
  $("elapsed").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  studio.tickTimer = setTimeout(tick, 1000 - ((Date.now() - studio.liveSince) % 1000));
}

goLive.addEventListener("click", () => {
  if (!studio.stream || studio.wanted) return;
  studio.wanted = true;
  studio.backoff.reset();
  connect();
});
stopButton.addEventListener("click", () => stop());
micButton.addEventListener("click", () => {
  const tracks = studio.stream ? studio.stream.getAudioTracks() : [];
  const muted = tracks.some((t) => t.enabled);
  for (const t of tracks) t.enabled = !muted;
  setText(micButton, muted ? "studio.media.unmuteMic" : "studio.media.muteMic");
  micButton.classList.toggle("primary", muted);
});
$("camera-retry").addEventListener("click", startCamera);
// End the WHIP session when the page goes away rather than waiting for the server to notice.
addEventListener("pagehide", () => closeSession());

startCamera();
