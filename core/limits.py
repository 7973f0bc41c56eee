"""Process limits a node or a load generator outgrows: one descriptor per connection."""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

WANTED_OPEN_FILES = 1 << 20


def raise_open_files_limit(wanted: int = WANTED_OPEN_FILES) -> int:
    """Lift RLIMIT_NOFILE's soft limit to the hard one, and the hard one towards `wanted` when
    allowed (root, CAP_SYS_RESOURCE; never past fs.nr_open). A crowd of 20,000 sockets otherwise
    meets a common hard limit of 20,000 descriptors. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted
    with contextlib.suppress(OSError, ValueError):
        ceiling = min(wanted, int(Path("/proc/sys/fs/nr_open").read_text()))
    unlimited = hard == resource.RLIM_INFINITY
    if not unlimited and hard < ceiling:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, ceiling))
            return ceiling
    # An unlimited hard limit still caps the soft one at fs.nr_open.
    target = ceiling if unlimited else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
