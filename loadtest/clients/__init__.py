"""Clients of a node, one viewer, buyer or page at a time."""
