"""The test suite, laid out as the code: sweeper/<stage>/, kernels/, studies/<science>/, benchmarks/; fixtures/
holds small studies the engine tests run, data/ small input files."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
