"""Analytics on Spark: the canonical tables of a cutoff, exported and registered in Spark.

Design overview
---------------
DESIGN.md's scale path: PostgreSQL stays the system of record, and analytics that outgrow
one machine "run on Spark over the exported transaction history". This module is that
export. :func:`on_spark` takes a loaded ``source.Source`` (the canonical tables in DuckDB,
normalised whatever the OLTP backend), writes each table to Parquet and registers the
files as temporary views of a Spark session, and yields a :class:`SparkSource`: the same
tables, under the same names and columns, as Ibis expressions of Ibis's PySpark backend.
The scoring code (``scores.member_history``, ``scores.category_cycles``) is written in Ibis
and runs on it unchanged; only the compressed results come back to Python, where ``fit``
and ``score`` proceed as on DuckDB.

What differs from the DuckDB source, and why:

* ids are text (hyphenated UUIDs): Parquet's UUID type is not read by Spark, and text
  compares and sorts the same way;
* ``materialize`` caches a temporary view instead of creating a temporary table (the
  PySpark backend has none);
* there is no ``duck`` connection: analyses written in DuckDB SQL (portraits, profiles)
  keep running on the DuckDB source the Spark one was exported from.

The session: Spark allows one per process and its JVM takes seconds to start, so the
session is made once (:func:`spark_session`, local mode by default, or the active session
when patron runs inside ``spark-submit``) and kept for the life of the process; each
source registers its views under a prefix of its own and drops them (and their caches)
when it closes, so sources do not see each other's tables.

Requirements: the ``pyspark`` package (in patron's ``dev`` dependency group, pinned with
the Ibis version whose backend supports it) and a Java 17 or later runtime on the PATH or
in ``JAVA_HOME``; without them selecting the Spark engine fails with an error naming
``analytics_engine`` before anything is written.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb

from patron.analytics.source import Source
from patron.core.errors import ValidationFailed

EngineName = Literal["duckdb", "spark"]
ENGINES: tuple[EngineName, ...] = ("duckdb", "spark")

#: Local-mode settings: two worker threads (the size of a small machine; a cluster sets
#: its own), few shuffle partitions (the default 200 means 200 tiny tasks per join at the
#: sizes one shop has), no web UI, nothing listening beyond the loopback interface.
LOCAL_CONF: dict[str, str] = {
    "spark.app.name": "patron-analytics",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.catalogImplementation": "in-memory",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
DEFAULT_MASTER = "local[2]"
#: The canonical tables ``scores.member_history`` and ``scores.category_cycles`` read: all
#: a scoring run exports (portraits read more, on DuckDB).
SCORE_TABLES: tuple[str, ...] = ("sales", "lines", "members", "surveys", "holdings")


def java_home() -> str | None:
    """The Java runtime Spark will start (``JAVA_HOME`` first, then the PATH), or None."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return home
    java = shutil.which("java")
    return str(Path(java).resolve().parent.parent) if java else None


def available() -> str | None:
    """None when the Spark engine can run here, else the reason it cannot (for errors and
    for skipping tests)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return ('the Spark engine needs the pyspark package: pip install "patron[spark]" '
                "(make install puts it in the development environment)")
    if java_home() is None:
        return "the Spark engine needs a Java 17+ runtime (java on the PATH or JAVA_HOME)"
    return None


def check_engine(engine: str) -> EngineName:
    """The engine name, validated; for ``spark`` also that pyspark and Java are here."""
    if engine not in ENGINES:
        raise ValidationFailed(f"unknown analytics engine {engine!r} (choose one of "
                               f"{', '.join(ENGINES)})", "analytics_engine")
    if engine == "spark" and (reason := available()) is not None:
        raise ValidationFailed(reason, "analytics_engine")
    return "spark" if engine == "spark" else "duckdb"


def spark_session(master: str = DEFAULT_MASTER, *, conf: Mapping[str, str] | None = None,
                  scratch: str | None = None) -> Any:
    """The process's Spark session: the active one if there is one (``spark-submit``),
    else a new one on ``master`` with :data:`LOCAL_CONF` (and ``conf`` over it).

    ``scratch`` is where Spark spills and keeps its (unused) warehouse; by default a
    directory under the system's temporary directory, deleted when the process exits.
    """
    if (reason := available()) is not None:
        raise ValidationFailed(reason, "analytics_engine")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if scratch is None:
        scratch = tempfile.mkdtemp(prefix="patron-spark-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    builder = SparkSession.builder.master(master)
    settings = {**LOCAL_CONF, "spark.local.dir": scratch,
                "spark.sql.warehouse.dir": str(Path(scratch) / "warehouse"), **(conf or {})}
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@dataclass
class SparkSource(Source):
    """The canonical tables of one cutoff as Spark temporary views (see the module
    docstring); the same API as ``Source`` except ``duck``."""

    session: Any = None  # pyspark.sql.SparkSession
    views: dict[str, str] = field(default_factory=dict)  # table name -> Spark view name
    prefix: str = ""

    @property
    def duck(self) -> duckdb.DuckDBPyConnection:
        raise ValidationFailed("this analysis is written in DuckDB SQL and runs on the DuckDB "
                               "source only (the Spark source has no DuckDB connection)",
                               "analytics_engine")

    def table(self, name: str) -> Any:
        """A canonical (or materialized) table as an ``ibis.Table`` of the Spark backend."""
        if name not in self.views:
            raise KeyError(f"{name!r} was not loaded (loaded: {', '.join(self.loaded)})")
        return self.con.table(self.views[name])

    def materialize(self, name: str, expr: Any) -> Any:
        """Compute an expression once (a cached temporary view) and return it."""
        if name not in self.materialized:
            view = f"{self.prefix}{name}"
            self.con.create_view(view, expr, overwrite=True)
            self.session.catalog.cacheTable(view)
            self.views[name] = view
            self.materialized.add(name)
        return self.table(name)

    def close(self) -> None:
        """Drop this source's views and caches; the session lives on for the next run."""
        catalog = self.session.catalog
        for name, view in self.views.items():
            if name in self.materialized:
                catalog.uncacheTable(view)
            catalog.dropTempView(view)
        self.views.clear()


def _export(src: Source, name: str, path: Path) -> None:
    """One canonical table to Parquet, ids as hyphenated text."""
    table = src.table(name)
    ids = {col: table[col].cast("string") for col, dtype in table.schema().items()
           if dtype.is_uuid()}
    src.con.to_parquet(table.mutate(**ids) if ids else table, str(path))


@contextlib.contextmanager
def on_spark(src: Source, *, session: Any = None, master: str = DEFAULT_MASTER,
             tables: tuple[str, ...] | None = None) -> Iterator[SparkSource]:
    """The tables of ``src`` (or only ``tables`` of them) exported to Parquet and
    registered in Spark; the files and views are deleted when the block ends.

    ``session`` defaults to :func:`spark_session` on ``master``.
    """
    started = time.perf_counter()
    session = session or spark_session(master)
    import ibis

    con = ibis.pyspark.connect(session)
    names = tuple(tables or src.loaded)
    workdir = tempfile.TemporaryDirectory(prefix="patron-spark-export-")
    spark_src = SparkSource(con=con, as_of=src.as_of, cutoff=src.cutoff,
                            timezone=src.timezone, backend=src.backend, loaded=names,
                            session=session, prefix=f"patron_{uuid.uuid4().hex[:12]}_")
    try:
        for name in names:
            path = Path(workdir.name) / f"{name}.parquet"
            _export(src, name, path)
            view = f"{spark_src.prefix}{name}"
            session.read.parquet(str(path)).createOrReplaceTempView(view)
            spark_src.views[name] = view
        spark_src.timings["export"] = time.perf_counter() - started
        yield spark_src
    finally:
        spark_src.close()
        workdir.cleanup()


@contextlib.contextmanager
def engine_source(src: Source, engine: str) -> Iterator[Source]:
    """``src`` itself on DuckDB; on Spark, the same tables registered there (``on_spark``).

    The one switch ``service.refresh`` needs to score on the engine the settings name;
    only the tables scoring reads (:data:`SCORE_TABLES`) are exported.
    """
    if check_engine(engine) == "duckdb":
        yield src
        return
    with on_spark(src, tables=SCORE_TABLES) as spark_src:
        yield spark_src
