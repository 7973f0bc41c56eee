"""Every module imports on its own, in a fresh interpreter state for the project's packages.

An import circle hidden by the order in which the suite happens to import things shows up here:
each module is imported with every project module forgotten first (third-party ones stay loaded,
so the whole run takes seconds). The layering itself is the import contract in pyproject.toml.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "chat", "commerce", "media", "edge", "devtools", "loadtest", "live")

PROBE = """
import importlib, json, sys, traceback
packages, modules = json.loads(sys.argv[1])
failed = {}
for name in modules:
    for loaded in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps(failed))
"""


def project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue  # runs the program
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_on_its_own() -> None:
    modules = project_modules()
    assert len(modules) > 100  # the walk found the tree
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([PACKAGES, modules])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )
    failed = json.loads(out.stdout.splitlines()[-1])
    assert failed == {}, "\n".join(f"{name}:\n{tb}" for name, tb in failed.items())
