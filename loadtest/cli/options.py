"""What the `live loadtest` commands share: argument types, refusals, the JSON file."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from loadtest.report import procfs


def cpu_list(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU list: {text!r}") from None


def pinning_flags(parser: argparse.ArgumentParser) -> None:
    """--server-cpus, --client-cpus and --allow-remote, for the commands that start servers or
    aim at --target URLs."""
    parser.add_argument(
        "--server-cpus",
        type=cpu_list,
        default=None,
        help="CPUs for servers and Valkey, e.g. 1 or 2,3 (default: upper half)",
    )
    parser.add_argument(
        "--client-cpus",
        type=cpu_list,
        default=None,
        help="CPUs for the load generator (default: lower half)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow --target URLs outside loopback"
    )


def refuse(message: str) -> int:
    """Say why on stderr; the exit status of a command refused as asked (2)."""
    print(f"live loadtest: {message}", file=sys.stderr)
    return 2


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def show(text: str, doc: dict[str, Any], path: Path | None) -> None:
    """A run's table after its progress lines, and its JSON document written to `path`."""
    print()
    print(text)
    if path:
        write_json(doc, path)
        print(f"\nJSON written to {path}")


def warn_unless_loopback_only() -> None:
    if not procfs.loopback_only():
        print(
            "live loadtest: not in a loopback-only network namespace; run WebRTC benchmarks "
            "under scripts/loopback-only",
            file=sys.stderr,
        )


def missing_extra() -> str | None:
    """Why the WebRTC parts (synthetic media) cannot run here: the load tester's extra is not
    installed with the server."""
    if importlib.util.find_spec("numpy") is None:
        return "this needs the load tester's extra: pip install 'live-commerce[loadtest]'"
    return None
