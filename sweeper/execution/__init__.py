"""Stage 3, running the plan: the driver, the scheduler's wait loop and its bookkeeping (queues), how a run reaches
a Ray worker (executors: tasks; actors: warm actors), what runs there (worker), the SLURM script (slurm)."""
