"""Every moderator action through real sockets, with room and role boundaries and the audit log."""

from __future__ import annotations

import asyncio
import time

import pytest

from loadtest.report.scrape import parse
from tests.conftest import Client, ClientFactory, RunningNode

# Against a single Valkey and a Valkey Cluster (tests/conftest.py, "Store kinds").
pytestmark = pytest.mark.stores("single", "cluster")


@pytest.fixture
async def room(node: RunningNode, connect: ClientFactory) -> tuple[Client, Client, Client]:
    """A moderator of r1, a viewer and a second viewer, all joined to r1."""
    mod = await connect(node.url, "mia", role="moderator", rooms=["r1"])
    alice = await connect(node.url, "alice")
    bob = await connect(node.url, "bob")
    for client in (mod, alice, bob):
        await client.join("r1")
    return mod, alice, bob


async def mod(client: Client, action: str, **fields: object) -> dict[str, object]:
    return await client.call("mod", {"room": "r1", "action": action, **fields})


async def test_timed_mute_then_unmute(room: tuple[Client, Client, Client]) -> None:
    moderator, alice, _ = room
    ack = await mod(moderator, "mute", user_id="alice", seconds=60)
    assert ack["ok"]
    notice = await alice.wait_for("muted")
    assert notice["until"] == ack["until"]
    refused = await alice.call("chat", {"room": "r1", "text": "hello?"})
    assert refused["error"] == "muted" and refused["until"] == ack["until"]
    assert (await mod(moderator, "unmute", user_id="alice"))["ok"]
    await alice.wait_for("muted", lambda d: d["until"] == 0)
    assert (await alice.call("chat", {"room": "r1", "text": "back"}))["ok"]


async def test_mute_expires_by_itself(room: tuple[Client, Client, Client]) -> None:
    moderator, alice, _ = room
    assert (await mod(moderator, "mute", user_id="alice", seconds=0))["error"] == "invalid_payload"
    ack = await mod(moderator, "mute", user_id="alice", seconds=1)
    assert (await alice.call("chat", {"room": "r1", "text": "not yet"}))["error"] == "muted"
    # Wait out the mute by the server's own clock, then the next message is admitted.
    await asyncio.sleep(max(0.0, ack["until"] / 1000 - time.time()) + 0.05)
    assert (await alice.call("chat", {"room": "r1", "text": "free"}))["ok"]
    assert (await moderator.call("mod_state", {"room": "r1"}))["muted"] == []


async def test_ban_disconnects_and_blocks_rejoin_until_unban(
    node: RunningNode, connect: ClientFactory, room: tuple[Client, Client, Client]
) -> None:
    moderator, alice, bob = room
    second_tab = await connect(node.url, "alice")
    await second_tab.join("r1")
    assert (await mod(moderator, "ban", user_id="alice"))["ok"]
    for socket in (alice, second_tab):
        await socket.wait_for("banned", lambda d: d == {"room": "r1"})
        await socket.disconnected.wait()
    assert not bob.disconnected.is_set()

    again = await connect(node.url, "alice")
    refused = await again.call("join", {"room": "r1"})
    assert refused == {"ok": False, "error": "banned", "detail": "you are banned from this room"}
    state = await moderator.call("mod", {"room": "r1", "action": "unban", "user_id": "alice"})
    assert state["ok"]
    assert (await again.call("join", {"room": "r1"}))["ok"]


async def test_delete_removes_from_history_and_every_client(
    node: RunningNode, connect: ClientFactory, room: tuple[Client, Client, Client]
) -> None:
    moderator, alice, bob = room
    keep = (await alice.call("chat", {"room": "r1", "text": "keep me"}))["id"]
    gone = (await alice.call("chat", {"room": "r1", "text": "delete me"}))["id"]
    assert (await mod(moderator, "delete", message_id=gone))["ok"]
    await bob.wait_for("deleted", lambda d: d == {"room": "r1", "message_id": gone})
    await alice.wait_for("deleted", lambda d: d["message_id"] == gone)
    late = await (await connect(node.url, "late")).join("r1")
    assert [m["id"] for m in late["history"]] == [keep]
    again = await mod(moderator, "delete", message_id=gone)
    assert again["ok"] is False and again["error"] == "unknown_message"


async def test_clear_empties_history(
    node: RunningNode, connect: ClientFactory, room: tuple[Client, Client, Client]
) -> None:
    moderator, alice, bob = room
    last = (await alice.call("chat", {"room": "r1", "text": "soon gone"}))["id"]
    assert (await mod(moderator, "clear"))["ok"]
    await bob.wait_for("cleared")
    assert (await (await connect(node.url, "late")).join("r1"))["history"] == []
    # A client resuming from an id older than the clear gets the new messages only.
    newer = (await alice.call("chat", {"room": "r1", "text": "after clear"}))["id"]
    resumed = await (await connect(node.url, "resumer")).join("r1", since=last)
    assert [m["id"] for m in resumed["history"]] == [newer]


async def test_slow_mode_spaces_viewer_messages_but_not_moderators(
    room: tuple[Client, Client, Client],
) -> None:
    moderator, alice, _ = room
    assert (await mod(moderator, "slow", seconds=30))["ok"]
    await alice.wait_for("slow", lambda d: d["seconds"] == 30)
    assert (await alice.call("chat", {"room": "r1", "text": "one"}))["ok"]
    refused = await alice.call("chat", {"room": "r1", "text": "two"})
    assert refused["error"] == "slow"
    assert (await moderator.call("chat", {"room": "r1", "text": "mods are exempt"}))["ok"]
    assert (await moderator.call("chat", {"room": "r1", "text": "still exempt"}))["ok"]
    assert (await mod(moderator, "slow", seconds=0))["ok"]
    assert (await alice.call("chat", {"room": "r1", "text": "three"}))["ok"]


async def test_blocked_terms_hold_messages_for_review(room: tuple[Client, Client, Client]) -> None:
    moderator, alice, bob = room
    assert (await mod(moderator, "block_term", term="cheap*watches"))["ok"]
    held = await alice.call("chat", {"room": "r1", "text": "CHEAP designer Watches here"})
    assert held["ok"] and held["held"] is True
    queued = await moderator.wait_for("held")
    assert queued["message"]["text"] == "CHEAP designer Watches here"
    rejected = await alice.call("chat", {"room": "r1", "text": "cheap fake watches"})
    state = await moderator.call("mod_state", {"room": "r1"})
    assert [m["id"] for m in state["held"]] == [held["id"], rejected["id"]]

    approved = await mod(moderator, "approve", message_id=held["id"])
    assert approved["ok"]
    shown = await bob.wait_for("chat", lambda m: m["id"] == approved["id"])
    assert shown["text"] == "CHEAP designer Watches here"
    assert (await mod(moderator, "reject", message_id=rejected["id"]))["ok"]
    assert all(m["text"] != "cheap fake watches" for m in bob.events["chat"])
    twice = await mod(moderator, "reject", message_id=rejected["id"])
    assert twice["error"] == "unknown_message"
    assert (await moderator.call("mod_state", {"room": "r1"}))["held"] == []

    assert (await mod(moderator, "unblock_term", term="cheap*watches"))["ok"]
    assert "held" not in await alice.call("chat", {"room": "r1", "text": "cheap watches ok now"})


async def test_pin_and_unpin_message(
    node: RunningNode, connect: ClientFactory, room: tuple[Client, Client, Client]
) -> None:
    moderator, alice, bob = room
    message_id = (await alice.call("chat", {"room": "r1", "text": "pin me"}))["id"]
    assert (await mod(moderator, "pin_message", message_id=message_id))["ok"]
    pinned = await bob.wait_for("pinned", lambda d: d["message"] is not None)
    assert pinned["message"]["text"] == "pin me"
    late = await (await connect(node.url, "late")).join("r1")
    assert late["state"]["pinned_message"]["id"] == message_id
    assert (await mod(moderator, "unpin_message"))["ok"]
    await bob.wait_for("pinned", lambda d: d["message"] is None)


async def test_roles_are_enforced_per_room(
    node: RunningNode, connect: ClientFactory, room: tuple[Client, Client, Client]
) -> None:
    moderator, alice, _ = room
    # A moderator of r1 has no power in r2, not even over a viewer there.
    other = await connect(node.url, "eve", rooms=["r2"])
    await other.join("r2")
    refused = await moderator.call("mod", {"room": "r2", "action": "ban", "user_id": "eve"})
    assert refused["ok"] is False and refused["error"] == "forbidden"
    assert (await moderator.call("join", {"room": "r2"}))["error"] == "forbidden"
    # A viewer cannot moderate at all.
    as_viewer = await alice.call("mod", {"room": "r1", "action": "ban", "user_id": "bob"})
    assert as_viewer["error"] == "forbidden"
    assert (await alice.call("mod_state", {"room": "r1"}))["error"] == "forbidden"
    assert not other.disconnected.is_set()


async def test_every_action_lands_in_the_audit_log(room: tuple[Client, Client, Client]) -> None:
    moderator, alice, _ = room
    await mod(moderator, "mute", user_id="alice", seconds=30)
    await mod(moderator, "slow", seconds=5)
    await mod(moderator, "ban", user_id="bob")
    await moderator.wait_for("audit", lambda d: d["entry"]["action"] == "ban")
    state = await moderator.call("mod_state", {"room": "r1"})
    assert [e["action"] for e in state["audit"]] == ["ban", "slow", "mute"]
    assert state["audit"][2]["user_id"] == "alice" and state["audit"][2]["actor"] == "mia"
    assert state["muted"][0]["user_id"] == "alice" and state["muted"][0]["name"] == "Alice"
    assert state["banned"] == [{"user_id": "bob", "name": "Bob"}]
    assert state["slow"] == 5
    # Refused actions change nothing and are not audited.
    await alice.call("mod", {"room": "r1", "action": "clear"})
    assert len((await moderator.call("mod_state", {"room": "r1"}))["audit"]) == 3


async def test_moderators_cannot_mute_or_ban_the_host_or_each_other(
    node: RunningNode, connect: ClientFactory, room: tuple[Client, Client, Client]
) -> None:
    moderator, _, _ = room
    # `host` owns r1 (tests/conftest.py) and need not be in the room to be protected.
    for action, fields in (("ban", {}), ("mute", {"seconds": 60}), ("mute", {})):
        ack = await mod(moderator, action, user_id="host", **fields)
        assert ack["ok"] is False and ack["error"] == "forbidden", ack
    # Another moderator and another host of the room (acting for its seller: `host` has no shop,
    # so the room sells for user:host), known once they joined it with that role.
    other = await connect(node.url, "max", role="moderator", rooms=["r1"])
    cohost = await connect(node.url, "cora", role="host", rooms=["r1"], shop="user:host")
    for client in (other, cohost):
        await client.join("r1")
    for target in ("max", "cora"):
        for action in ("ban", "mute"):
            ack = await mod(moderator, action, user_id=target, seconds=60)
            assert ack["error"] == "forbidden", (target, action, ack)
    assert (await other.call("chat", {"room": "r1", "text": "still here"}))["ok"]
    assert (await moderator.call("mod_state", {"room": "r1"}))["banned"] == []
    # Hosts still manage moderators; viewers are moderated as before.
    assert (await mod(cohost, "mute", user_id="max", seconds=60))["ok"]
    assert (await mod(moderator, "mute", user_id="alice", seconds=60))["ok"]
    assert (await mod(cohost, "ban", user_id="host"))["error"] == "forbidden"
    samples = parse(node.node.metrics.render().decode())
    assert samples['live_mod_refusals_total{action="ban"}'][1] == 4
    assert samples['live_mod_refusals_total{action="mute"}'][1] == 4


async def test_a_host_of_another_seller_does_not_moderate_the_room(
    node: RunningNode, connect: ClientFactory, room: tuple[Client, Client, Client]
) -> None:
    moderator, alice, _ = room
    # Hosts of another shop, and a shopless host who is not r1's owner, though their tokens grant
    # every room: they may watch and chat like anyone, but hold no power in r1.
    for rival in (
        await connect(node.url, "rex", role="host", shop="rival-shop"),
        await connect(node.url, "ray", role="host"),
    ):
        assert (await rival.join("r1"))["ok"]
        assert (await rival.call("mod", {"room": "r1", "action": "ban", "user_id": "alice"}))[
            "error"
        ] == "forbidden"
        assert (await rival.call("mod_state", {"room": "r1"}))["error"] == "forbidden"
        assert (await rival.call("mod", {"room": "r1", "action": "clear"}))["error"] == "forbidden"
    # Nor are they staff the room's moderators must spare.
    assert (await mod(moderator, "mute", user_id="rex", seconds=60))["ok"]
    # Slow mode binds them as it binds viewers (staff are exempt).
    assert (await mod(moderator, "slow", seconds=60))["ok"]
    ray = await connect(node.url, "ray2", role="host")
    await ray.join("r1")
    assert (await ray.call("chat", {"room": "r1", "text": "one"}))["ok"]
    assert (await ray.call("chat", {"room": "r1", "text": "two"}))["error"] == "slow"
    assert not alice.disconnected.is_set()
