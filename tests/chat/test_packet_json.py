"""The JSON the Socket.IO server decodes packets with: one decoder, engine.io's integer guard."""

from __future__ import annotations

import json

import pytest
import socketio.packet

from chat.server import _PacketJson
from live.app import RunningNode


def test_packets_decode_as_the_stdlib_does_and_huge_integers_are_refused(
    node: RunningNode,
) -> None:
    assert node.node.chat.sio.packet_class.json is _PacketJson
    text = '["buy",{"room":"r1","quantity":2,"price":9.5,"key":"k\\u00e9y","n":null}]'
    assert _PacketJson.loads(text) == json.loads(text)
    assert _PacketJson.loads(text.encode()) == json.loads(text)
    assert _PacketJson.loads("[" + "9" * 100 + "]") == [int("9" * 100)]
    with pytest.raises(ValueError, match="too large"):
        _PacketJson.loads("[" + "9" * 101 + "]")
    with pytest.raises(ValueError):
        _PacketJson.loads('["buy",')
    pkt = socketio.packet.Packet(encoded_packet='2/live,7["buy",{"quantity":1}]')
    assert (pkt.namespace, pkt.id, pkt.data) == ("/live", 7, ["buy", {"quantity": 1}])
