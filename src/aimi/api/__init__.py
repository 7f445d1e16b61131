"""The HTTP layer: translates the wire to domain objects and back, and nothing else."""
