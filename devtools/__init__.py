"""Harnesses shared by tests, benchmarks and `live cluster`: node process spawning (spawn.py),
the synthetic video track (synthetic.py), the WAN emulator (wan.py)."""
