"""Privacy rights (GDPR/CCPA): the port through which each domain exports and erases what it
holds about a user, the stable pseudonym that replaces a user in records that must be kept, and
the in-place rewrite of stream entries those records live in. `docs/privacy.md` lists the keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from core.auth import user_seller

PSEUDONYM_PREFIX = "anon-"
# Keys of a JSON object that hold the display name of the user its id keys name.
NAME_KEYS = frozenset({"name", "user_name", "actor_name", "sender_name", "host_name"})
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


def names_user(value: Any, user: str) -> bool:
    """Whether a JSON value mentions `user` (a string equal to it, or to the seller a user is
    without a shop, `user:ID`, anywhere inside)."""
    if isinstance(value, str):
        return value in (user, user_seller(user))
    if isinstance(value, dict):
        return any(names_user(v, user) for v in value.values())
    if isinstance(value, list):
        return any(names_user(v, user) for v in value)
    return False


def pseudonymise(value: Any, user: str, pseudo: str) -> Any:
    """`value` with every string equal to `user` replaced by `pseudo` (and `user:ID` by
    `user:PSEUDO`), and in every object that names `user` its display names (`NAME_KEYS`) too."""
    if isinstance(value, str):
        if value == user:
            return pseudo
        return user_seller(pseudo) if value == user_seller(user) else value
    if isinstance(value, list):
        return [pseudonymise(v, user, pseudo) for v in value]
    if isinstance(value, dict):
        names = any(v == user for v in value.values())
        return {
            k: pseudo if names and k in NAME_KEYS and isinstance(v, str)
            else pseudonymise(v, user, pseudo)
            for k, v in value.items()
        }  # fmt: skip
    return value


async def stream_entries(
    redis: aioredis.Redis, key: str
) -> AsyncIterator[tuple[str, dict[bytes, bytes]]]:
    """Every entry of a stream, oldest first, a page at a time."""
    start = "-"
    while True:
        rows = await redis.xrange(key, min=start, count=PAGE)
        for entry_id, fields in rows:
            yield entry_id.decode(), fields
        if len(rows) < PAGE:
            return
        start = "(" + rows[-1][0].decode()


class StreamRewriter:
    """Rewrites entries of a stream keeping their ids, atomically (`REWRITE`): the cost is the
    whole stream, read and written again in one script (Valkey serves nothing else meanwhile)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script: AsyncScript = redis.register_script(REWRITE)

    async def rewrite(self, key: str, changes: dict[str, list[str]]) -> int:
        """Give each entry id of `changes` its new fields (field, value, ...; [] drops it)."""
        if not changes:
            return 0
        return int(await self._script(keys=[key], args=[json.dumps(changes)]))


REWRITE = """
-- Rewrite entries of one stream in place, keeping every id: the stream is read whole, deleted
-- and rebuilt with explicit ids (XADD cannot go back below the last id, and XSETID not below the
-- largest deleted id, so there is no cheaper way to edit an entry), then its last id, counters,
-- consumer groups (last-delivered id, entries read), consumers and pending entries are restored
-- (XCLAIM ... FORCE with each entry's idle time and delivery count). Atomic: one script.
-- KEYS: 1 the stream
-- ARGV: 1 JSON {id: [field, value, ...]}: the new fields of each rewritten entry ([] drops it)
-- Returns the number of entries rewritten or dropped.
local key = KEYS[1]
local changes = cjson.decode(ARGV[1])
if redis.call('EXISTS', key) == 0 then return 0 end
local function map(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
local info = map(redis.call('XINFO', 'STREAM', key))
local groups = {}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  g = map(g)
  g.consumers_list = {}
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', key, g.name)) do
    table.insert(g.consumers_list, map(c).name)
  end
  g.pel = {}
  if g.pending > 0 then g.pel = redis.call('XPENDING', key, g.name, '-', '+', g.pending) end
  table.insert(groups, g)
end
local entries = redis.call('XRANGE', key, '-', '+')
local function before(a, b)  -- a < b for ids 'ms-seq'
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  if #am ~= #bm then return #am < #bm end
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
local max_deleted = info['max-deleted-entry-id']
local changed = 0
redis.call('DEL', key)
local kept = {}
for _, e in ipairs(entries) do
  local fields = e[2]
  local new = changes[e[1]]
  if new ~= nil then
    changed = changed + 1
    fields = new
  end
  if #fields > 0 then
    redis.call('XADD', key, e[1], unpack(fields))
    kept[e[1]] = true
  elseif before(max_deleted, e[1]) then
    max_deleted = e[1]
  end
end
local last = info['last-generated-id']
if redis.call('EXISTS', key) == 0 then
  -- Every entry dropped: an empty stream that still remembers its last id.
  redis.call('XADD', key, 'MAXLEN', '0', last, 'x', '')
end
redis.call('XSETID', key, last, 'ENTRIESADDED', info['entries-added'], 'MAXDELETEDID', max_deleted)
for _, g in ipairs(groups) do
  local create = {'XGROUP', 'CREATE', key, g.name, g['last-delivered-id']}
  if g['entries-read'] then
    table.insert(create, 'ENTRIESREAD')
    table.insert(create, g['entries-read'])
  end
  redis.call(unpack(create))
  for _, c in ipairs(g.consumers_list) do
    redis.call('XGROUP', 'CREATECONSUMER', key, g.name, c)
  end
  for _, p in ipairs(g.pel) do
    -- p: id, consumer, idle ms, deliveries; a dropped entry leaves the pending list.
    if kept[p[1]] then
      redis.call('XCLAIM', key, g.name, p[2], 0, p[1], 'IDLE', p[3], 'RETRYCOUNT', p[4],
        'FORCE', 'JUSTID')
    end
  end
end
return changed
"""
