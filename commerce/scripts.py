"""The Lua scripts, registered once per client; called by SHA, reloaded on NOSCRIPT."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

LUA = Path(__file__).parent / "lua"


class Scripts:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.reserve: AsyncScript = redis.register_script((LUA / "reserve.lua").read_text())
        self.settle: AsyncScript = redis.register_script((LUA / "settle.lua").read_text())
        self.put_product: AsyncScript = redis.register_script((LUA / "put_product.lua").read_text())
