"""The load tester (`live loadtest`): a crowd simulator and the benchmarks, shipped with the server.

Imports point down: `cli` (the command, one module per KIND), `scenario` (scenario files),
`benches` (one module per benchmark: session and driver), `fleet` (the processes a run starts),
`clients` (one viewer, buyer or page at a time), then `report` and `plan`. docs/loadtest.md
has a line per package.
"""
