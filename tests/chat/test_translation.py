"""Chat across languages: a message's `lang`, and translations from a LibreTranslate-compatible
service this test runs on loopback (a fixed dictionary that counts its calls)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from live.app import RunningNode
from tests.conftest import Client, ClientFactory, NodeFactory
from tests.support.translation import TranslationService
from tests.support.waiting import eventually


def ordered(client: Client) -> list[tuple[str, Any]]:
    """Record `chat` and `chat_translation` in arrival order (besides `client.events`)."""
    arrivals: list[tuple[str, Any]] = []
    for event in ("chat", "chat_translation"):

        async def record(data: Any, event: str = event) -> None:
            arrivals.append((event, data))
            await client._record(event, data)

        client.sio.on(event, record, namespace="/live")
    return arrivals


def translations(node: RunningNode, outcome: str) -> float:
    value = node.node.metrics.registry.get_sample_value(
        "live_chat_translations_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_viewers_get_translations_into_their_language_after_the_original(
    start_node: NodeFactory, connect: ClientFactory, service: TranslationService
) -> None:
    a = await start_node(chat_translate_url=service.url)
    b = await start_node(chat_translate_url=service.url)
    await a.node.rooms.create(title="Test room", owner="host", room_id="r1")
    host = await connect(a.url, "host", role="host")
    spanish = await connect(b.url, "ana")
    arrivals = ordered(spanish)
    french = await connect(a.url, "fleur")
    plain = await connect(b.url, "pat")
    for client in (host, spanish, french, plain):
        await client.join("r1")

    # Bad languages are refused, naming the problem.
    for bad in ("EN", "e", "en_US", "en-" + "x" * 9, "en" + "-abcdefgh" * 4, 7):
        ack = await host.call("chat", {"room": "r1", "text": "hi", "lang": bad})
        assert ack["ok"] is False and ack["error"] == "invalid_payload", (bad, ack)
        assert ack["detail"].startswith("lang:"), ack
    ack = await spanish.call("translate", {"room": "r1", "lang": "pt"})
    assert ack["error"] == "invalid_payload" and "en, es, fr" in ack["detail"], ack
    ack = await spanish.call("translate", {"room": "r2", "lang": "es"})
    assert ack["error"] == "not_joined", ack

    ack = await spanish.call("translate", {"room": "r1", "lang": "es-MX"})
    assert ack == {"ok": True, "lang": "es", "available": True}
    assert (await french.call("translate", {"room": "r1", "lang": "fr"}))["ok"]

    sent = await host.call("chat", {"room": "r1", "text": "hello", "lang": "en-US"})
    assert sent["ok"], sent
    got = await spanish.wait_for("chat_translation", lambda t: t["id"] == sent["id"])
    assert got == {"room": "r1", "id": sent["id"], "lang": "es", "text": "hola"}
    assert [e for e, d in arrivals if d["id"] == sent["id"]] == ["chat", "chat_translation"]
    original = await plain.wait_for("chat", lambda m: m["id"] == sent["id"])
    assert original["lang"] == "en-US" and original["text"] == "hello"
    fr = await french.wait_for("chat_translation", lambda t: t["id"] == sent["id"])
    assert fr["text"] == "bonjour"
    # Each node translated for its own viewers: once into Spanish (b), once into French (a).
    assert service.calls == {("hello", "es"): 1, ("hello", "fr"): 1}
    assert {(b["source"], b["format"]) for b in service.bodies} == {("en", "text")}

    # A message in Spanish is not translated into Spanish; one without lang is "auto".
    spanish_msg = await host.call("chat", {"room": "r1", "text": "hola", "lang": "es"})
    await french.wait_for("chat_translation", lambda t: t["id"] == spanish_msg["id"])
    unknown = await host.call("chat", {"room": "r1", "text": "good night"})
    await spanish.wait_for("chat_translation", lambda t: t["id"] == unknown["id"])
    assert ("hola", "es") not in service.calls
    assert {b["source"] for b in service.bodies if b["q"] == "good night"} == {"auto"}

    # The history keeps each message's language (none when it was not given).
    history = (await plain.join("r1"))["history"]
    assert [m.get("lang") for m in history] == ["en-US", "es", None]

    # A message nobody asked German for, asked twice at once by two German viewers (and again
    # by one of them): translated once, every ask answered.
    germans = [await connect(a.url, f"gerd-{i}") for i in range(2)]
    for german in germans:
        await german.join("r1")
    asks = [
        german.call("translate", {"room": "r1", "lang": "de", "ids": [unknown["id"], sent["id"]]})
        for german in germans
    ]
    assert [ack["lang"] for ack in await asyncio.gather(*asks)] == ["de", "de"]
    for german in germans:
        got = await german.wait_for("chat_translation", lambda t: t["id"] == unknown["id"])
        assert got["text"] == "gute Nacht"
        await german.wait_for("chat_translation", lambda t: t["id"] == sent["id"])
    assert (await germans[0].call("translate", {"room": "r1", "lang": "de", "ids": [sent["id"]]}))[
        "ok"
    ]
    await eventually(lambda: len(germans[0].events["chat_translation"]) == 3)
    assert service.calls[("good night", "de")] == 1 and service.calls[("hello", "de")] == 1
    assert translations(a, "cached") >= 3

    # Stopping: no more translations for that socket (a new message reaches only the French).
    assert (await spanish.call("translate", {"room": "r1", "lang": None}))["lang"] is None
    last = await host.call("chat", {"room": "r1", "text": "hello", "lang": "en"})
    await french.wait_for("chat_translation", lambda t: t["id"] == last["id"])
    await spanish.wait_for("chat", lambda m: m["id"] == last["id"])
    assert service.calls[("hello", "es")] == 1
    assert plain.events["chat_translation"] == []

    async with aiohttp.ClientSession() as http, http.get(f"{b.url}/metrics") as response:
        text = await response.text()
    assert 'live_chat_translations_total{outcome="translated"}' in text
    assert "live_chat_translation_seconds_count" in text


async def test_a_failing_slow_or_absent_service_leaves_chat_as_it_was(
    start_node: NodeFactory, connect: ClientFactory, service: TranslationService
) -> None:
    node = await start_node(
        chat_translate_url=service.url,
        chat_translate_timeout_s=0.5,
        chat_translate_concurrency=1,
        chat_translate_queue=0,
    )
    await node.node.rooms.create(title="Test room", owner="host", room_id="r1")
    host = await connect(node.url, "host", role="host")
    viewer = await connect(node.url, "ana")
    await host.join("r1")
    await viewer.join("r1")
    assert (await viewer.call("translate", {"room": "r1", "lang": "es"}))["available"] is True

    async def say(text: str) -> str:
        ack = await host.call("chat", {"room": "r1", "text": text, "lang": "en"})
        assert ack["ok"], ack
        await viewer.wait_for("chat", lambda m: m["id"] == ack["id"])
        return str(ack["id"])

    await say("slow")
    await asyncio.wait_for(service.slow_started.wait(), 5)
    await say("hello")  # the one slot is taken and nothing may wait: dropped
    await eventually(lambda: translations(node, "dropped") == 1)
    await eventually(lambda: translations(node, "timeout") == 1)
    await say("boom")  # 500
    await eventually(lambda: translations(node, "failed") == 1)
    await service.stop()
    await say("hello")  # connection refused
    await eventually(lambda: translations(node, "failed") == 2)
    assert viewer.events["chat_translation"] == []
    assert translations(node, "translated") == 0
    assert [m["text"] for m in viewer.events["chat"]] == ["slow", "hello", "boom", "hello"]
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as response:
        text = await response.text()
    assert 'live_chat_translations_total{outcome="failed"} 2.0' in text
    assert 'live_chat_translations_total{outcome="timeout"} 1.0' in text


async def test_translation_is_off_by_default(node: RunningNode, connect: ClientFactory) -> None:
    viewer = await connect(node.url, "ana")
    await viewer.join("r1")
    ack = await viewer.call("translate", {"room": "r1", "lang": "es"})
    assert ack == {"ok": True, "lang": "es", "available": False}
