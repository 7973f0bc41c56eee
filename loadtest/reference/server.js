// Reference chat server for the benchmark: socket.io + @socket.io/redis-adapter + redis.
// Same contract as the Python node for what the benchmark uses: namespace /live, token in the
// handshake auth (HS256, LIVE_JWT_SECRET), `join {room}` -> {ok, history, state},
// `chat {room, text}` -> {ok, id}, broadcast `chat {id, room, user, text, ts}`. No history,
// moderation or rate limit: it is the yardstick for fan-out, not a second implementation.
"use strict";

const crypto = require("crypto");
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const SECRET = process.env.LIVE_JWT_SECRET || "";
const HOST = process.env.HOST || "127.0.0.1";
const PORT = Number(process.env.PORT || 0);
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const NODE_ID = process.env.NODE_ID || "node-ref";
const MAX_CHARS = 500;
const ROOM_ID = /^[A-Za-z0-9_-]{1,64}$/;

function b64url(buf) {
  return buf.toString("base64").replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function verify(token) {
  if (typeof token !== "string") throw new Error("missing_token");
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("invalid_token");
  const header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
  if (header.alg !== "HS256") throw new Error("invalid_token");
  const expected = b64url(crypto.createHmac("sha256", SECRET).update(parts[0] + "." + parts[1]).digest());
  const given = Buffer.from(parts[2]);
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, Buffer.from(expected))) {
    throw new Error("invalid_token");
  }
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  if (typeof claims.exp !== "number" || claims.exp * 1000 < Date.now()) throw new Error("token_expired");
  if (typeof claims.sub !== "string" || !claims.sub) throw new Error("invalid_token");
  return claims;
}

function inRoom(claims, room) {
  const rooms = Array.isArray(claims.rooms) ? claims.rooms : ["*"];
  return rooms.includes("*") || rooms.includes(room);
}

function cleanText(text) {
  // Control characters out, like the Python node; newlines and tabs become spaces.
  return text.replace(/[\t\n\r]/g, " ").replace(/[\u0000-\u001f\u007f-\u009f]/g, "").trim().slice(0, MAX_CHARS);
}

function refuse(ack, error, detail) {
  if (typeof ack === "function") ack({ ok: false, error, detail });
}

async function main() {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  pub.on("error", (err) => console.error("redis pub:", err.message));
  sub.on("error", (err) => console.error("redis sub:", err.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", node: NODE_ID }));
      return;
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: "not_found", detail: "no such route" }));
  });
  const io = new Server(httpServer, { cors: { origin: "*" }, maxHttpBufferSize: 1e6 });
  io.adapter(createAdapter(pub, sub));
  const live = io.of("/live");
  let seq = 0;

  live.use((socket, next) => {
    try {
      socket.data.claims = verify(socket.handshake.auth && socket.handshake.auth.token);
      next();
    } catch (err) {
      next(new Error(err.message));
    }
  });

  live.on("connection", (socket) => {
    const claims = socket.data.claims;
    const user = { id: claims.sub, name: claims.name || claims.sub, role: claims.role };
    socket.on("join", (data, ack) => {
      const room = data && data.room;
      if (typeof room !== "string" || !ROOM_ID.test(room)) return refuse(ack, "invalid_payload", "room must be a room id");
      if (!inRoom(claims, room)) return refuse(ack, "forbidden", `the token does not grant room '${room}'`);
      socket.join(room);
      if (typeof ack === "function") ack({ ok: true, history: [], state: { room_id: room }, user });
    });
    socket.on("chat", (data, ack) => {
      const room = data && data.room;
      if (typeof room !== "string" || !socket.rooms.has(room)) return refuse(ack, "not_joined", "join the room first");
      if (typeof data.text !== "string") return refuse(ack, "invalid_payload", "text must be a string");
      const text = cleanText(data.text);
      if (!text) return refuse(ack, "empty_message", "the message is empty");
      const ts = Date.now();
      const message = { id: `${ts}-${NODE_ID}-${seq++}`, room, user, text, ts };
      live.to(room).emit("chat", message);
      if (typeof ack === "function") ack({ ok: true, id: message.id });
    });
  });

  httpServer.listen(PORT, HOST, () => {
    const { port } = httpServer.address();
    console.log(`node reference ${NODE_ID} listening on http://${HOST}:${port}`);
  });

  const shutdown = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
