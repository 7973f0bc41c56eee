"""One module per benchmark, each with its session and driver."""
