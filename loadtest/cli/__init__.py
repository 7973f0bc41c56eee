"""`live loadtest`: one module per KIND (chat, sale, gifts, media, ...), registered here.

The benchmarks themselves are imported when one runs (`loadtest.benches`, `loadtest.scenario`).
"""

from __future__ import annotations

import argparse
from typing import Any

from loadtest.cli import chat, fsync, gifts, latency, media, privacy, run, sale, scale

OVERVIEW = """\
The crowd simulator and the benchmarks; each KIND has its own --help.

  chat     N Socket.IO viewers in one room at a room-wide chat rate: deliveries, loss, latency
           percentiles, server RSS per connection and CPU; 1 or 2 nodes, optionally beside
           the Node.js reference server
  sale     a flash-sale crowd pressing Buy: attempts per second, latency, the sale's
           invariants; the reservation script called directly on Valkey as the ceiling
  gifts    gifts/s on one node core (a burst from many Socket.IO gifters, the books checked),
           the wallet script called directly, and gift event delivery to N viewers
  media    WebRTC fan-out of one host stream to N viewers, per send path (and Janus as the
           reference): server CPU per viewer, fps, loss, time to first frame
  latency  glass-to-glass video latency on an origin and through an edge node: the edge hop
  scale    media, chat and sale figures as nodes (1-3) and Valkey shards (1, 3) are added:
           per-node CPU and egress, the cross-node relay cost, deliveries/s, attempts/s
  run      a scenario file: mixed roles, thresholds, JSON and HTML reports
  fsync    the embedded Valkey's appendfsync always vs everysec: reservation script calls/s
           and the holds a power loss can take
  privacy  what erasing a user costs the store: a purchase stream read whole and rewritten
           in place (Valkey's stall)

chat, sale, gifts and media start their own servers on loopback, pinned with taskset to CPUs apart
from the load generator (chat, sale, gifts: upper half / lower half; media: one CPU / another).
WebRTC (media, latency, the WebRTC roles of run) offers loopback ICE candidates only: run it
under scripts/loopback-only (as root for the media benchmark's priorities and Janus modes).
`make bench` runs chat, sale, gifts, media, latency and fsync briefly; JSON in bench-results/."""


def register(sub: Any) -> None:
    """Add `loadtest` and its kinds to the `live` command."""
    loadtest = sub.add_parser(
        "loadtest",
        help="load-test a deployment; the chat, sale, media and latency benchmarks",
        description=OVERVIEW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = loadtest.add_subparsers(dest="loadtest_kind", required=True, metavar="KIND")
    for kind in (chat, sale, gifts, media, latency, scale, run, fsync, privacy):
        kind.register(kinds)
