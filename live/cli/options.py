"""Flags shared by the commands that run nodes, and the settings they make."""

from __future__ import annotations

import argparse
from typing import Any

from live.settings import Settings
from media.config import MediaSettings


def node_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (LIVE_HOST, default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, help="port to listen on, 0 for any (LIVE_PORT, default 8080)"
    )
    p.add_argument("--region", help="region this node serves (LIVE_REGION)")
    p.add_argument("--public-url", help="URL clients use to reach this node (LIVE_PUBLIC_URL)")
    p.add_argument("--data-dir", help="where the embedded Valkey keeps its data (LIVE_DATA_DIR)")
    p.add_argument(
        "--media-workers",
        type=count_or_auto,
        metavar="N|auto",
        help="processes serving viewers' WebRTC: 0 = in the node, auto = one per core when "
        "there are several (LIVE_MEDIA_WORKERS, default auto)",
    )
    p.add_argument(
        "--media-max-viewers",
        type=count_or_auto,
        metavar="N|auto",
        help="WebRTC viewers the node takes at most before WHEP answers 503 full: 0 = no limit, "
        "auto = 500 per process serving viewers; below it the node also refuses viewers by its "
        "measured load (LIVE_MEDIA_ADMISSION; LIVE_MEDIA_MAX_VIEWERS, default auto)",
    )


def count_or_auto(text: str) -> int | str:
    """A count or `auto` (`--media-workers`, `--media-max-viewers`)."""
    if text == "auto":
        return text
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number or auto") from None
    if count < 0:
        raise argparse.ArgumentTypeError("0 or more")
    return count


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Environment first, then flags that were given, then `overrides` (flat names)."""
    values = {
        k: v
        for k, v in {
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "region": getattr(args, "region", None),
            "public_url": getattr(args, "public_url", None),
            "data_dir": getattr(args, "data_dir", None),
            "role": getattr(args, "role", None),
            "origin_url": getattr(args, "origin", None),
            "media_workers": getattr(args, "media_workers", None),
            "media_max_viewers": getattr(args, "media_max_viewers", None),
        }.items()
        if v is not None
    }
    values.update(overrides)
    sections = Settings.sectioned(values)
    media = MediaSettings(**sections.get("media", {}))
    if "workers" not in media.model_fields_set:
        # Commands that run nodes for real use the cores; the section's own default (0) suits
        # tests. (`live cluster` gives its nodes 0 through the environment: they share a machine.)
        sections["media"] = {**sections.get("media", {}), "workers": "auto"}
    return Settings(**sections)
