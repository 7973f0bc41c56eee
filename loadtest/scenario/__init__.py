"""Scenario files: their format, their run and its final table."""
