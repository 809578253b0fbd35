"""Stage 5, reading results: SweepResult and load (sweep_result), the statistics behind it (stats)."""
