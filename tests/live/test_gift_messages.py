"""A gift's message: screened by the chat's rules before the debit, posted in the room's chat and
carried on the `gift` event; a moderator hides it as a chat message, and the ledger (which never
holds the text) is unchanged."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import ClientFactory, NodeFactory


async def test_a_gift_message_is_screened_shown_and_hidden_without_touching_the_ledger(
    start_node: NodeFactory, connect: ClientFactory
) -> None:
    node = await start_node(gifts_message_max_chars=20)
    commerce = node.node.commerce
    await node.node.rooms.create(title="Gifts", owner="host", room_id="g1")
    await commerce.credit(
        "alice", key="topup-alice", amount=50, reason="", reference="", by="test", seller=""
    )
    alice = await connect(node.url, "alice", rooms=["g1"])
    bob = await connect(node.url, "bob", rooms=["g1"])
    mia = await connect(node.url, "mia", role="moderator", rooms=["g1"])
    for client in (alice, bob, mia):
        await client.join("g1")

    def gift(key: str, gift_id: str = "rose", **extra: Any) -> dict[str, Any]:
        return {"room": "g1", "gift_id": gift_id, "count": 1, "key": key, **extra}

    async def balance() -> int:
        return int((await commerce.wallets.wallet("alice"))["balance"])

    # Refused texts cost nothing: too long (after cleaning), empty after cleaning.
    too_long = await alice.call("gift", gift("key-long-1", message="x" * 21))
    empty = await alice.call("gift", gift("key-empty-1", message="\u202e\x00"))
    assert (too_long["error"], empty["error"]) == ("too_long", "empty_message"), (too_long, empty)
    assert await balance() == 50

    # Sent: in the chat (with the gift), on the room's `gift` event, in the ack; not in the ledger.
    ack = await alice.call("gift", gift("key-hello-1", "heart", message="  hi\u202e host  "))
    assert ack["ok"] and ack["message"]["held"] is False and ack["balance"] == 47, ack
    message_id = ack["message"]["id"]
    chat = await bob.wait_for("chat", lambda m: m["id"] == message_id)
    assert chat["text"] == "hi host" and chat["user"]["id"] == "alice"
    assert chat["gift"] == {"gift_id": "heart", "name": "Heart", "count": 1}
    event = await bob.wait_for("gift", lambda g: g["gift_id"] == "heart")
    assert event["message"] == {"id": message_id, "text": "hi host"}
    replay = await alice.call("gift", gift("key-hello-1", "heart", message="hi host"))
    assert replay["replayed"] and "message" not in replay
    ledgers = {u: (await commerce.wallets.wallet(u))["entries"] for u in ("alice", "host")}
    assert "hi host" not in repr(ledgers)

    # A moderator hides it: gone from the chat for everyone, the ledger untouched.
    hidden = await mia.call("mod", {"room": "g1", "action": "delete", "message_id": message_id})
    assert hidden["ok"], hidden
    assert (await bob.wait_for("deleted"))["message_id"] == message_id
    rejoined = await bob.join("g1")
    assert message_id not in [m["id"] for m in rejoined["history"]]
    assert {u: (await commerce.wallets.wallet(u))["entries"] for u in ledgers} == ledgers
    assert (await commerce.wallets.wallet("host"))["earned"] == 3 - 3 * 3000 // 10_000

    # A blocked term holds the text for review; the gift itself goes.
    blocked = await mia.call("mod", {"room": "g1", "action": "block_term", "term": "spam*"})
    assert blocked["ok"], blocked
    ack = await alice.call("gift", gift("key-spam-1", message="spammy text"))
    assert ack["ok"] and ack["message"]["held"] is True, ack
    held = await mia.wait_for("held")
    assert held["message"]["id"] == ack["message"]["id"]
    assert held["message"]["gift"]["name"] == "Rose"
    event = await bob.wait_for("gift", lambda g: g["gift_id"] == "rose")
    assert event["message"] is None

    # REST: the same rules; a muted user's message is refused before any debit.
    headers = {"Authorization": f"Bearer {alice.token}", "Idempotency-Key": "key-rest-1"}
    url = f"{node.url}/api/rooms/g1/gifts"
    async with aiohttp.ClientSession() as http:
        body = {"gift_id": "rose", "message": "from rest"}
        async with http.post(url, json=body, headers=headers) as resp:
            sent = await resp.json()
            assert resp.status == 201 and sent["message"]["held"] is False, sent
        await bob.wait_for("chat", lambda m: m["id"] == sent["message"]["id"])
        muted = await mia.call("mod", {"room": "g1", "action": "mute", "user_id": "alice"})
        assert muted["ok"], muted
        left = await balance()
        headers["Idempotency-Key"] = "key-rest-2"
        async with http.post(url, json=body, headers=headers) as resp:
            assert (resp.status, (await resp.json())["error"]) == (403, "muted")
        assert await balance() == left
