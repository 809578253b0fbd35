"""Stage 4, reading results: SweepResult and load (sweep_result), the statistics behind it (stats), the typed
rows of configs() and compare() with their table form (rows)."""
