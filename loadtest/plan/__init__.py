"""What a run asks for: workloads, arrivals, region maps, the targets it may aim at."""
