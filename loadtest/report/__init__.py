"""Measuring and reporting: histograms, /proc samples, /metrics scrapes, rules, live display,
HTML."""
