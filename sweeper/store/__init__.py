"""Stage 3, the sweep directory on disk: its paths (paths), what is read and written there (sweep_store), the run
records (records), the lock (lock), atomic files (atomic)."""
