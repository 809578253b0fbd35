"""Stage 2, running the plan on Ray: the scheduler's wait loop and its bookkeeping (queues), the background writer
(saver), how a run reaches a Ray worker (executors: tasks; actors: warm actors), what runs there (worker), joining
a cluster (connect), the study sent to the workers (shipping), the SLURM script (slurm). The driver that calls
it is sweeper/driver.py."""
