"""The studies' front door: everything a study (or a benchmark) may use from the engine besides `sweeper`'s
own names (run, load, Study, Params, SweepResult, load_spec, expand, SpecError). Studies and benchmarks import
nothing else from `sweeper` (tests/sweeper/test_layout.py checks the import graph).

Reporting:
    pyplot                  matplotlib's pyplot on the engine's non-interactive backend (figures in tasks)
    write_csv(rows, path)   a list of flat dicts as CSV, written atomically
    text_table(head, rows)  rows of strings as an aligned text table
Statistics:
    mean_ci(values, ci)     mean, Student-t interval and one-sample p of values (cluster means if given)
    welch(a, b, ci)         Welch's difference of two samples with its interval and p
    variance_components(values, groups)   between- and within-group variance (data vs fitting variance)
Typed columns:
    to_rows(table)          an Arrow table as dicts with exact values (an int stays an int)
    key_of(value)           a hashable key of a typed value (grouping by configuration)
    plain(value)            numpy scalars and arrays as plain Python values (JSON, YAML)
Execution:
    assigned_gpus()         the GPU ids Ray gave this worker (empty on a CPU)
    arrays_sha256(arrays)   the content hash the engine records for a dataset
    SweepStore              a sweep directory's store (the engine's own benchmarks of its write path)
"""
from sweeper.columns import key_of, to_rows
from sweeper.execution.worker import assigned_gpus
from sweeper.hashing import arrays_sha256, plain
from sweeper.report.figures import pyplot
from sweeper.report.tables import text_table, write_csv
from sweeper.results.stats import mean_ci, variance_components, welch
from sweeper.store.sweep_store import SweepStore

__all__ = ["pyplot", "write_csv", "text_table", "mean_ci", "welch", "variance_components", "to_rows", "key_of",
           "plain", "assigned_gpus", "arrays_sha256", "SweepStore"]
