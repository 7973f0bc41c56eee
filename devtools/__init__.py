"""Developer and test harnesses: node process spawning, the WAN emulator."""
