"""The node-to-worker channel: record format, parsing across chunk boundaries, and a worker's
bounded backlog (video skips to a keyframe, audio drops, nothing blocks)."""

from __future__ import annotations

from media import MediaConfig
from media.frames import EncodedFrame
from media.workers.channel import ChannelProtocol, Control, control_record, frame_record
from media.workers.link import WorkerLink


def collect() -> tuple[ChannelProtocol, list[tuple[str, EncodedFrame]], list[Control]]:
    frames: list[tuple[str, EncodedFrame]] = []
    controls: list[Control] = []
    protocol = ChannelProtocol(
        lambda room, frame: frames.append((room, frame)), controls.append, lambda exc: None
    )
    return protocol, frames, controls


def test_records_survive_any_chunking() -> None:
    video = EncodedFrame("VP8", b"\x10\x02" * 5000, timestamp=2**40 + 3, keyframe=True, epoch=7)
    audio = EncodedFrame("opus", b"\xfc\x01", timestamp=960, keyframe=True, epoch=7)
    stream = b"".join(
        (
            frame_record("r\u00e9", video),
            control_record({"op": "play", "id": 3, "offer": "v=0", "owner": None}),
            frame_record("r2", audio),
        )
    )
    for chunk in (1, 7, 4096, len(stream)):
        protocol, frames, controls = collect()
        for pos in range(0, len(stream), chunk):
            protocol.data_received(stream[pos : pos + chunk])
        assert frames == [("r\u00e9", video), ("r2", audio)]
        assert controls == [{"op": "play", "id": 3, "offer": "v=0", "owner": None}]
        assert protocol.records_in == 3


def test_frame_header_layout() -> None:
    frame = EncodedFrame("H264", b"\x00\x00\x01\x65", timestamp=9, keyframe=True, epoch=2)
    record = frame_record("ab", frame)
    # length, FRAME, room length, codec H264, keyframe flag, epoch, timestamp, room, data
    assert record == (
        (1 + 15 + 2 + 4).to_bytes(4, "big")
        + b"\x01\x02\x01\x01"
        + (2).to_bytes(4, "big")
        + (9).to_bytes(8, "big")
        + b"ab\x00\x00\x01\x65"
    )


class HeldChannel(ChannelProtocol):
    """A channel whose socket takes nothing: every record stays in the backlog."""

    def __init__(self) -> None:
        super().__init__(lambda room, frame: None, lambda message: None, lambda exc: None)
        self.written: list[bytes] = []

    def write(self, record: bytes) -> None:
        self.written.append(record)

    @property
    def backlog(self) -> int:
        return sum(len(r) for r in self.written)


def test_a_worker_behind_skips_video_to_a_keyframe_and_drops_audio() -> None:
    link = WorkerLink(0, MediaConfig(worker_backlog_bytes=250), lambda link, message: None)
    channel = link.channel = HeldChannel()

    def video(n: int, keyframe: bool = False) -> EncodedFrame:
        return EncodedFrame("VP8", bytes(100), timestamp=n, keyframe=keyframe)

    def send(frame: EncodedFrame) -> bool:
        return link.send_frame("r1", frame, frame_record("r1", frame))

    assert not send(video(0, keyframe=True))
    assert not send(video(1))
    assert not send(video(2))  # 3 records held: past the bound now
    assert send(video(3))  # skip starts: ask for a keyframe
    assert not send(EncodedFrame("opus", bytes(10), timestamp=0, keyframe=True))
    assert not send(video(4))
    assert send(video(5, keyframe=True))  # still full: this keyframe is lost too, ask again
    channel.written.clear()  # the worker caught up
    assert not send(video(6))  # still waiting for a keyframe
    assert not send(video(7, keyframe=True))
    assert not send(video(8))
    assert len(channel.written) == 2
    assert link.frames_dropped == 5 and link.skips == 1
