"""Copy the raw tables analytics need out of a SQLite file, in a process of its own.

Why a separate process: DuckDB's sqlite scanner carries its own copy of the SQLite
library. Two SQLite libraries in one process that open the same database each believe they
are alone: POSIX locks are per process, so each takes the other's locks for its own, and
the one that closes (or opens) first resets the WAL's shared-memory index under the other
(https://sqlite.org/howtocorrupt.html, section 2.2.1). In patron's own process that
crashed the app's next big write with SIGBUS. In a child process the two libraries meet
only through the file locks, which work between processes, so the scanner reads a
consistent snapshot (one read transaction) while the shop keeps selling.

Usage (``source.open_source`` runs it)::

    python -m patron.analytics.sqlite_extract DATABASE OUT CUTOFF TABLE [TABLE ...]

builds the canonical tables TABLE... (``source.CANONICAL_TABLES``) of the history up to
CUTOFF (an ISO datetime with offset) from the SQLite file DATABASE into the new DuckDB
file OUT, which the parent then opens; prints the seconds each step took as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

import duckdb

from patron.analytics.canonical import (
    CANONICAL_TABLES,
    LOAD_COMPRESSION,
    RAW_TABLES,
    Kind,
    RawTable,
    build_canonical,
    configure,
    cut_sql,
    needed,
    sqlite_scanner_path,
)


def _column(col: str, kind: Kind) -> str:
    quoted = f'"{col}"'
    if kind is Kind.TS:  # naive UTC text, read by the scanner as TIMESTAMP
        return f"CAST(CAST({quoted} AS TIMESTAMP) AS TIMESTAMPTZ) AS {quoted}"
    if kind is Kind.UUID:
        # SQLAlchemy's Uuid is 32 hex digits on SQLite. DuckDB's text-to-UUID cast took
        # 0.17 us a value here (some 50 million ids at a million members); hex to a
        # 16-byte BLOB, then BLOB to UUID, gives the same UUID in 0.13 us. Any other
        # spelling takes the plain cast.
        return (f"CASE WHEN length({quoted}) = 32 THEN CAST(from_hex({quoted}) AS UUID) "
                f"ELSE CAST({quoted} AS UUID) END AS {quoted}")
    if kind is Kind.TEXT:
        return quoted
    return f"CAST({quoted} AS {kind.value}) AS {quoted}"


def _scanned(spec: RawTable, cutoff: datetime) -> str:
    """What the scan reads: the table, or with ``spec.where`` SQLite's own query of the rows
    that meet it. The scanner reads every row it is given (a filter in DuckDB does not
    reach SQLite), so the few inactive members among a million took 0.57 s; asked of
    SQLite, 0.2 s."""
    if not spec.where:
        return f"oltp.{spec.source}"
    # SQLite keeps times as naive UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff': text order is
    # time order, so the cutoff in that spelling compares as a time
    literal = "'" + cutoff.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") + "'"
    names = ", ".join(f'"{col}"' for col, _ in spec.columns)
    query = (f"SELECT {names} FROM {spec.source} "  # noqa: S608 - our names
             f"WHERE {spec.where.format(cutoff=literal)}")
    return "sqlite_query('oltp', '" + query.replace("'", "''") + "')"


def extract(database: str, out: str, cutoff: datetime, tables: list[str], *,
            workdir: str, memory_limit: str | None = None) -> dict[str, float]:
    """Build the canonical ``tables`` from the SQLite file into the DuckDB file ``out``."""
    canonical, raw = needed(tables)
    duck = duckdb.connect(out)
    try:
        configure(duck, workdir=workdir, memory_limit=memory_limit)
        duck.execute(LOAD_COMPRESSION)
        started = time.perf_counter()
        duck.execute(f"LOAD '{sqlite_scanner_path()}'")
        duck.execute(f"ATTACH '{database}' AS oltp (TYPE sqlite, READ_ONLY)")
        duck.execute("BEGIN TRANSACTION")  # one read transaction: a consistent snapshot
        for name in raw:
            spec = RAW_TABLES[name]
            cols = ", ".join(_column(col, kind) for col, kind in spec.columns)
            scan = f"SELECT {cols} FROM {_scanned(spec, cutoff)}"  # noqa: S608 - our names
            duck.execute(f"CREATE TEMP VIEW {spec.raw_name} AS {cut_sql(spec, scan, cutoff)}")
        timings = {"attach": time.perf_counter() - started,
                   **build_canonical(duck, canonical, cutoff)}
        duck.execute("COMMIT")
        duck.execute("DETACH oltp")
        duck.execute("CHECKPOINT")
        return timings
    finally:
        duck.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patron.analytics.sqlite_extract")
    parser.add_argument("database")
    parser.add_argument("out")
    parser.add_argument("cutoff", type=datetime.fromisoformat)
    parser.add_argument("tables", nargs="+", choices=CANONICAL_TABLES)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--memory-limit")
    args = parser.parse_args(argv)
    timings = extract(args.database, args.out, args.cutoff, args.tables, workdir=args.workdir,
                      memory_limit=args.memory_limit)
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
