"""The processes a run starts: load-generator workers and the servers under test."""
