"""The open-files limit is lifted for a crowd of connections."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_open_files_limit_is_lifted_past_a_low_hard_limit() -> None:
    # In a child process: lower both limits as a stingy login would, then lift them.
    code = textwrap.dedent(
        """
        import resource
        from core.limits import raise_open_files_limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))
        now = raise_open_files_limit(50_000)
        print(now, *resource.getrlimit(resource.RLIMIT_NOFILE))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    now, soft, hard = map(int, out)
    assert now == soft
    if _has_cap_sys_resource():
        assert soft == hard == 50_000  # root with CAP_SYS_RESOURCE raises the hard limit too
    else:
        assert soft == hard == 2048  # others get the soft limit up to the hard one


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)  # CAP_SYS_RESOURCE is bit 24
    return False
