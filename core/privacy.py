"""Privacy rights (GDPR/CCPA): the port through which each domain exports and erases what it
holds about a user, the stable pseudonym that replaces a user in records that must be kept, and
the in-place rewrite of stream entries those records live in. `docs/privacy.md` lists the keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from core.auth import user_seller

PSEUDONYM_PREFIX = "anon-"
# Keys of a JSON object that hold the display name of the user its id keys name.
NAME_KEYS = frozenset({"name", "user_name", "actor_name", "sender_name", "host_name"})
# Keys of a JSON object that hold a user id (or a `user:ID` seller) in what the store keeps:
# messages' `user.id`, audit `actor`/`user_id`, reservations, events, ledger entries, claims.
ID_KEYS = frozenset(
    {"id", "user_id", "host_id", "sender_id", "actor", "by", "created_by", "owner", "seller"}
)
PAGE = 500  # stream entries read per XRANGE


def pseudonym(secret: str, user: str) -> str:
    """`anon-` + 16 hex digits of HMAC-SHA256(secret, user): the same for a user on every node
    and every erasure, not reversible (nor recomputable for a guessed id) without the secret."""
    digest = hmac.new(secret.encode(), b"privacy\n" + user.encode(), hashlib.sha256)
    return PSEUDONYM_PREFIX + digest.hexdigest()[:16]


class IpKeys:
    """What stands for a client address in the store's rate windows: a keyed hash (BLAKE2b, 8
    bytes, ~1.3 us), the same on every node, so the per-address limit holds across nodes while
    neither Valkey nor its append-only file ever holds an address."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"ip\n" + secret.encode()).digest()

    def __call__(self, ip: str) -> str:
        return hashlib.blake2b(ip.encode(), key=self._key, digest_size=8).hexdigest()


class PersonalData(Protocol):
    """What one part of the system holds about users (a domain implements it; the app composes
    them). `export` answers JSON-able data (empty when it holds nothing about the user); `erase`
    removes or pseudonymises it and answers counts of what changed (idempotent: a second erase
    counts nothing)."""

    name: str

    async def export(self, user: str) -> dict[str, Any]: ...

    async def erase(self, user: str, pseudonym: str) -> dict[str, int]: ...


def _is_user(value: Any, user: str) -> bool:
    return isinstance(value, str) and value in (user, user_seller(user))


def names_user(value: Any, user: str) -> bool:
    """Whether a JSON value names `user` in a field that holds a user id (`ID_KEYS`: the id, or
    the seller a user is without a shop, `user:ID`), anywhere inside."""
    if isinstance(value, dict):
        return any(
            (k in ID_KEYS and _is_user(v, user)) or names_user(v, user) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(names_user(v, user) for v in value)
    return False


def pseudonymise(value: Any, user: str, pseudo: str) -> Any:
    """`value` with `user` replaced by `pseudo` in every field that holds a user id (`user:ID`
    by `user:PSEUDO`), and in every object naming `user` so its display names (`NAME_KEYS`).
    Only those fields: a user id that happens to equal an enumerated value (a role, a kind)
    leaves those values alone."""
    if isinstance(value, list):
        return [pseudonymise(v, user, pseudo) for v in value]
    if not isinstance(value, dict):
        return value
    names = any(k in ID_KEYS and v == user for k, v in value.items())
    out: dict[str, Any] = {}
    for k, v in value.items():
        if k in ID_KEYS and _is_user(v, user):
            out[k] = pseudo if v == user else user_seller(pseudo)
        elif names and k in NAME_KEYS and isinstance(v, str):
            out[k] = pseudo
        else:
            out[k] = pseudonymise(v, user, pseudo)
    return out


async def stream_entries(
    redis: aioredis.Redis, key: str, needle: str | None = None
) -> AsyncIterator[tuple[str, dict[bytes, bytes]]]:
    """Every entry of a stream, oldest first, a page at a time; with `needle`, only those with
    a field value containing it (a user id), tested in Valkey (`FIND`, `FIND_PAGE` entries per
    call) so the node decodes only those."""
    start = "-"
    find = redis.register_script(FIND) if needle is not None else None
    while True:
        if find is not None:
            read, last, rows = await find(keys=[key], args=[start, FIND_PAGE, needle])
            for entry_id, flat in rows:
                yield entry_id.decode(), dict(zip(flat[::2], flat[1::2], strict=True))
            if int(read) < FIND_PAGE:
                return
            start = last.decode()
            continue
        page = await redis.xrange(key, min=start if start == "-" else "(" + start, count=PAGE)
        for entry_id, fields in page:
            yield entry_id.decode(), fields
        if len(page) < PAGE:
            return
        start = page[-1][0].decode()


FIND_PAGE = 2000
FIND = """
-- The entries after a cursor (of the next COUNT) with a field value containing a text.
-- KEYS: 1 the stream; ARGV: 1 the last id read ('-': none yet), 2 count, 3 the text
-- Returns {entries read, the last id read, {{id, {field, value, ...}}, ...}}.
local start = ARGV[1] == '-' and '-' or '(' .. ARGV[1]
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[2])
local found = {}
for _, e in ipairs(entries) do
  local f = e[2]
  for i = 2, #f, 2 do
    if string.find(f[i], ARGV[3], 1, true) then
      table.insert(found, e)
      break
    end
  end
end
local last = #entries > 0 and entries[#entries][1] or ARGV[1]
return {#entries, last, found}
"""


class StreamRewriter:
    """Rewrites entries of a stream keeping their ids. A stream entry cannot be edited, nor a
    stream be given an entry below its last id (nor its last id be set below its largest deleted
    id), so the stream is rebuilt: copied into a key of its own slot a chunk at a time (`COPY`,
    `CHUNK` entries per call: Valkey serves other clients between chunks), the changed entries
    copied changed; then one script (`FINISH`) copies what was added meanwhile, drops from the
    copy what the stream lost from its head meanwhile (retention trims), checks both hold the same
    entries, restores the last id, counters, consumer groups, consumers and pending entries on
    the copy and renames it over the stream. A stream that changed otherwise meanwhile (a
    concurrent rewrite, an entry deleted mid-stream) fails the check: the copy is dropped and the
    rebuild starts again (at most `ATTEMPTS` times). The caller keeps rewrites of one stream from
    running at once (`live/privacy.py` holds one lock per erasure)."""

    CHUNK = 1000
    ATTEMPTS = 5

    def __init__(self, redis: aioredis.Redis) -> None:
        self._copy: AsyncScript = redis.register_script(COPY)
        self._finish: AsyncScript = redis.register_script(FINISH)

    @staticmethod
    def copy_key(key: str) -> str:
        """A key in `key`'s cluster slot: its hash tag, else the whole name as the tag."""
        start = key.find("{")
        end = key.find("}", start + 1)
        tagged = start >= 0 and end > start + 1
        return (key if tagged else "{" + key + "}") + ":rewrite:" + secrets.token_hex(4)

    async def rewrite(self, key: str, changes: dict[str, list[str]]) -> int:
        """Give each entry id of `changes` its new fields (field, value, ...; [] drops it);
        returns how many of those entries the stream held."""
        if not changes:
            return 0
        encoded = json.dumps(changes)
        for _ in range(self.ATTEMPTS):
            copy = self.copy_key(key)
            cursor = "-"
            while True:
                copied, last = await self._copy(
                    keys=[key, copy], args=[encoded, cursor, self.CHUNK]
                )
                cursor = last.decode() if isinstance(last, bytes) else str(last)
                if int(copied) < self.CHUNK:
                    break
            done = int(await self._finish(keys=[key, copy], args=[encoded, cursor]))
            if done >= 0:
                return done
        raise RuntimeError(f"stream {key} kept changing while it was rewritten")


COPY = """
-- Copy entries of a stream after a cursor into its copy, the changed ones changed.
-- KEYS: 1 the stream, 2 the copy; ARGV: 1 JSON {id: [field, value, ...]} ([] drops the entry),
-- 2 the last id copied ('-': none yet), 3 entries at most
-- Returns {entries read, the last id read}.
local changes = cjson.decode(ARGV[1])
local start = ARGV[2] == '-' and '-' or '(' .. ARGV[2]
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[3])
local last = ARGV[2]
for _, e in ipairs(entries) do
  local fields = changes[e[1]] or e[2]
  if #fields > 0 then redis.call('XADD', KEYS[2], e[1], unpack(fields)) end
  last = e[1]
end
return {#entries, last}
"""

FINISH = """
-- Finish a rebuild (see StreamRewriter): the rest copied, the head trimmed like the stream's,
-- the entries checked, the stream's ids, counters, groups, consumers and pending entries
-- (XCLAIM ... FORCE with their idle times and delivery counts) restored, then renamed over it.
-- KEYS: 1 the stream, 2 the copy; ARGV: 1 the changes (as COPY's), 2 the last id copied
-- Returns the changed entries the stream held, or -1 when it changed otherwise (start again).
local key, copy = KEYS[1], KEYS[2]
local changes = cjson.decode(ARGV[1])
if redis.call('EXISTS', key) == 0 then
  redis.call('DEL', copy)
  return 0
end
local start = ARGV[2] == '-' and '-' or '(' .. ARGV[2]
for _, e in ipairs(redis.call('XRANGE', key, start, '+')) do
  local fields = changes[e[1]] or e[2]
  if #fields > 0 then redis.call('XADD', copy, e[1], unpack(fields)) end
end
local function map(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
local info = map(redis.call('XINFO', 'STREAM', key))
local held, dropped = 0, 0
for id, fields in pairs(changes) do
  if #redis.call('XRANGE', key, id, id) > 0 then
    held = held + 1
    if #fields == 0 then dropped = dropped + 1 end
  end
end
local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
if first and redis.call('EXISTS', copy) == 1 then
  redis.call('XTRIM', copy, 'MINID', first[1])
end
local copied = redis.call('EXISTS', copy) == 1 and redis.call('XLEN', copy) or 0
if copied + dropped ~= info.length then
  redis.call('DEL', copy)
  return -1
end
local max_deleted = info['max-deleted-entry-id']
local function before(a, b)  -- a < b for ids 'ms-seq'
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  if #am ~= #bm then return #am < #bm end
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
for id, fields in pairs(changes) do
  if #fields == 0 and before(max_deleted, id) and #redis.call('XRANGE', key, id, id) > 0 then
    max_deleted = id
  end
end
local last = info['last-generated-id']
if copied == 0 then
  -- Every entry dropped: an empty stream that still remembers its last id.
  redis.call('DEL', copy)
  redis.call('XADD', copy, 'MAXLEN', '0', last, 'x', '')
end
redis.call('XSETID', copy, last, 'ENTRIESADDED', info['entries-added'], 'MAXDELETEDID', max_deleted)
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  g = map(g)
  local create = {'XGROUP', 'CREATE', copy, g.name, g['last-delivered-id']}
  if g['entries-read'] then
    table.insert(create, 'ENTRIESREAD')
    table.insert(create, g['entries-read'])
  end
  redis.call(unpack(create))
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', key, g.name)) do
    redis.call('XGROUP', 'CREATECONSUMER', copy, g.name, map(c).name)
  end
  if g.pending > 0 then
    for _, p in ipairs(redis.call('XPENDING', key, g.name, '-', '+', g.pending)) do
      -- p: id, consumer, idle ms, deliveries; a dropped entry leaves the pending list.
      local new = changes[p[1]]
      if new == nil or #new > 0 then
        redis.call('XCLAIM', copy, g.name, p[2], 0, p[1], 'IDLE', p[3], 'RETRYCOUNT', p[4],
          'FORCE', 'JUSTID')
      end
    end
  end
end
redis.call('RENAME', copy, key)
return held
"""
