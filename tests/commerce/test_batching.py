"""The script batcher: answers go to their callers, NOSCRIPT reloads, a dead store fails fast."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from commerce.batching import ScriptBatcher
from core.store import connect

ECHO = "return {ARGV[1], redis.call('INCR', KEYS[1])}"


async def test_concurrent_calls_get_their_own_answers(redis: aioredis.Redis) -> None:
    batcher = ScriptBatcher(redis, max_batch=64, timeout_s=5.0, max_inflight=2)
    script = redis.register_script(ECHO)
    peak = 0
    real_execute = batcher._execute

    async def watched(calls: list) -> list:  # type: ignore[type-arg]
        nonlocal peak
        peak = max(peak, batcher._inflight)
        return await real_execute(calls)

    batcher._execute = watched  # type: ignore[method-assign]
    answers = await asyncio.gather(
        *(batcher(script, ["{t}:n"], [f"call-{i}"]) for i in range(1000))
    )
    assert [a[0] for a in answers] == [f"call-{i}".encode() for i in range(1000)]
    assert sorted(a[1] for a in answers) == list(range(1, 1001))  # every script ran once
    assert peak <= 2


async def test_noscript_loads_the_script_and_retries(redis: aioredis.Redis) -> None:
    batcher = ScriptBatcher(redis, timeout_s=5.0)
    script = redis.register_script(ECHO)
    assert (await batcher(script, ["{t}:n"], ["a"]))[1] == 1
    await redis.script_flush()
    answers = await asyncio.gather(*(batcher(script, ["{t}:n"], [str(i)]) for i in range(10)))
    assert sorted(a[1] for a in answers) == list(range(2, 12))


async def test_a_store_that_does_not_answer_fails_every_queued_call_within_the_deadline() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # swallow requests, never answer, until the test closes it
        while await reader.read(1 << 20):
            pass

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = connect(f"redis://127.0.0.1:{port}", socket_timeout=10.0)
    try:
        batcher = ScriptBatcher(client, max_batch=2, timeout_s=0.3, max_inflight=1)
        script = client.register_script(ECHO)
        began = time.perf_counter()
        results = await asyncio.gather(
            *(batcher(script, ["{t}:n"], [str(i)]) for i in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, TimeoutError) for r in results), results
        # Five batches of two behind one in flight would take 1.5 s one after another.
        assert time.perf_counter() - began < 1.0
    finally:
        await client.aclose()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def test_evalsha_is_packed_as_redis_py_packs_it() -> None:
    from commerce.batching import _evalsha

    conn = aioredis.Redis().connection_pool.make_connection()
    keys = ["live:{sale:ab}:meta", "live:{sale:ab}:rl:u:ü"]
    args = ["room", "user", "key-1", 3, "ab-01", 10**9, 2.5, b"raw"]
    packed = b"".join(conn.pack_commands([("EVALSHA", "deadbeef", len(keys), *keys, *args)]))
    assert _evalsha("deadbeef", keys, args) == packed


def test_a_template_packs_what_evalsha_packs() -> None:
    from commerce.batching import EvalshaTemplate, _evalsha

    keys = ["live:{sale:ab}:meta", None, "live:{sale:ab}:res", None]
    args = [None, "room", None, 10**9, 2.5]
    template = EvalshaTemplate("deadbeef", keys, args)
    assert template.slots == 4
    values = ["live:{sale:ab}:rl:u:ü", "live:{sale:ab}:rl:ip:127.0.0.1", "user-1", 3]
    filled = iter(values)
    full_keys = [next(filled) if k is None else k for k in keys]
    full_args = [next(filled) if a is None else a for a in args]
    assert template.pack(*values) == _evalsha("deadbeef", full_keys, full_args)
    assert EvalshaTemplate("ab", [None], []).pack("k") == _evalsha("ab", ["k"], [])
    with pytest.raises(ValueError):
        template.pack("only one")


async def test_packed_calls_reload_a_flushed_script(redis: aioredis.Redis) -> None:
    from commerce.batching import EvalshaTemplate

    batcher = ScriptBatcher(redis, timeout_s=5.0)
    script = redis.register_script(ECHO)
    template = EvalshaTemplate(script.sha, ["{t}:n"], [None])
    assert (await batcher.call_packed(script, template.pack("a")))[1] == 1
    await redis.script_flush()
    answers = await asyncio.gather(
        *(batcher.call_packed(script, template.pack(str(i))) for i in range(10))
    )
    assert sorted(a[1] for a in answers) == list(range(2, 12))
    assert [a[0] for a in answers] == [str(i).encode() for i in range(10)]
