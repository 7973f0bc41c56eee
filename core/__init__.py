"""The kernel: config, auth, store, rooms, events port, errors, logs, limits, metrics.

It imports no domain and no app module (the import contract in `make lint` says so)."""
