"""The jobs: save, restore and verify. Each one models, plans, checks, then moves bytes."""
