"""Tables as text and CSV: the aligned text tables the CLI prints, the CSV files reports write."""
from __future__ import annotations

from pathlib import Path

from sweeper.store.atomic import atomic_write


def text_table(head: list, rows: list) -> str:
    """Rows of strings as left-aligned columns under `head`, two spaces apart."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in [head, *rows])


def write_csv(rows: list[dict], path: Path) -> Path:
    """A list of flat dicts as CSV (columns in first-seen order)."""
    import csv

    cols = list(dict.fromkeys(k for r in rows for k in r))

    def w(p):
        with open(p, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=cols)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(Path(path), w)
    return Path(path)
