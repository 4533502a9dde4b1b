"""Run the stages' DuckDB SQL on Spark: one definition of each query, two engines.

The relational stages (:mod:`linkage.signals`, :mod:`linkage.graph`) write their queries once,
in DuckDB's dialect, against a connection. :class:`SparkSQL` is such a connection for Spark:
each statement is parsed by sqlglot, rewritten where DuckDB has no Spark equivalent, and
generated as Spark SQL. Only the statement shapes the stages use are accepted; anything else
fails loudly rather than running with other semantics:

``CREATE [OR REPLACE] [TEMP] TABLE t AS SELECT ...``
    the SELECT runs on Spark and is written as Parquet under the staging folder, then read
    back as the view ``t`` (each table is materialised once: no lineage grows across stages).
``CREATE [OR REPLACE] [TEMP] TABLE t (col TYPE, ...)`` and ``INSERT INTO t VALUES (?, ...)``
    small parameter tables, kept on the driver and registered as views.
``DELETE FROM t [alias] USING u, ... WHERE cond``
    rewritten as ``t`` minus its rows with a match: ``SELECT * FROM t WHERE NOT EXISTS (...)``.
``DROP TABLE t``, and any ``SELECT`` (results fetched to the driver).

Rewrites beyond sqlglot's own transpiling (each keeps DuckDB's result bit for bit):

* ``list_aggregate(list(x ORDER BY x), 'product')`` (a product in sorted order, see
  :func:`linkage.graph._product`) becomes ``aggregate(array_sort(collect_list(x)), 1D,
  (acc, v) -> acc * v)``: the same multiplications in the same order.
* ``range(a, b) alias(col)`` with constant bounds becomes ``VALUES (a), ..., (b - 1)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.simplify import simplify

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkSQL", "to_spark"]


def to_spark(sql: str) -> str:
    """One DuckDB-dialect SELECT as Spark SQL (with the rewrites of this module)."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    return _generate(tree)


def _generate(tree: exp.Expr) -> str:
    tree = tree.transform(_rewrite)
    return tree.sql(dialect="spark")


def _rewrite(node: exp.Expr) -> exp.Expr:
    if (isinstance(node, exp.Anonymous) and node.name.lower() == "list_aggregate"
            and len(node.expressions) == 2
            and isinstance(node.expressions[0], exp.ArrayAgg)
            and node.expressions[1].name.lower() == "product"):
        inner = node.expressions[0].this
        value = inner.this if isinstance(inner, exp.Order) else inner
        spark_value = value.sql(dialect="spark")
        return sqlglot.parse_one(
            f"AGGREGATE(ARRAY_SORT(COLLECT_LIST({spark_value})), CAST(1 AS DOUBLE), "
            "(acc, v) -> acc * v)", read="spark")
    if isinstance(node, exp.Table) and isinstance(node.this, exp.GenerateSeries):
        series = node.this
        start, end = (simplify(series.args[k].copy()) for k in ("start", "end"))
        if not (isinstance(start, exp.Literal) and isinstance(end, exp.Literal)):
            raise NotImplementedError("range() with non-constant bounds has no Spark rewrite")
        stop = int(end.name) + (0 if series.args.get("is_end_exclusive") else 1)
        rows = [exp.Tuple(expressions=[exp.Literal.number(i)])
                for i in range(int(start.name), stop)]
        return exp.Values(expressions=rows, alias=node.args.get("alias"))
    return node


class SparkSQL:
    """A DuckDB-like connection (``execute``/``executemany``/``fetchone``/``fetchall``)
    whose statements run on Spark; tables are Parquet under ``staging``."""

    def __init__(self, spark: SparkSession, staging: str) -> None:
        self.spark = spark
        self.staging = staging.rstrip("/")
        self._rows: list[tuple[Any, ...]] = []
        self._small: dict[str, tuple[str, list[tuple[Any, ...]]]] = {}
        self._versions = itertools.count()

    # -- the DuckDB connection subset ------------------------------------------------------

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> SparkSQL:
        if parameters:
            raise NotImplementedError("SparkSQL.execute takes no parameters (use executemany)")
        tree = sqlglot.parse_one(sql, read="duckdb")
        self._rows = []
        if isinstance(tree, exp.Create):
            self._create(tree)
        elif isinstance(tree, exp.Delete):
            self._delete(tree)
        elif isinstance(tree, exp.Drop):
            for table in tree.args.get("tables") or [tree.this]:
                self.drop(table.name)
        elif isinstance(tree, exp.Query):
            self._rows = [tuple(r) for r in self.spark.sql(_generate(tree)).collect()]
        else:
            raise NotImplementedError(f"statement not supported on Spark: {sql[:80]!r}")
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> SparkSQL:
        tree = sqlglot.parse_one(sql, read="duckdb")
        if not isinstance(tree, exp.Insert):
            raise NotImplementedError(f"executemany supports INSERT only: {sql[:80]!r}")
        name = tree.this.name
        _, existing = self._small[name]
        existing.extend(tuple(r) for r in rows)
        self._register_small(name)
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    # -- tables ----------------------------------------------------------------------------

    def table(self, name: str) -> DataFrame:
        return self.spark.table(name)

    def save(self, name: str, df: DataFrame) -> DataFrame:
        """Write ``df`` as Parquet under the staging folder and register it as ``name``."""
        path = f"{self.staging}/{name}-{next(self._versions)}"
        df.write.mode("overwrite").parquet(path)
        saved = self.spark.read.parquet(path)
        saved.createOrReplaceTempView(name)
        return saved

    def drop(self, name: str) -> None:
        self._small.pop(name, None)
        self.spark.catalog.dropTempView(name)

    def _create(self, tree: exp.Create) -> None:
        target = tree.this
        query = tree.expression
        if isinstance(target, exp.Schema):  # CREATE TABLE t (col TYPE, ...)
            cols = []
            for col in target.expressions:
                cols.append(f"{col.name} {col.args['kind'].sql(dialect='spark')}")
            name = target.this.name
            self._small[name] = (", ".join(cols), [])
            self._register_small(name)
        elif isinstance(query, exp.Query):
            self.save(target.name, self.spark.sql(_generate(query)))
        else:
            raise NotImplementedError(f"CREATE not supported on Spark: {tree.sql()[:80]!r}")

    def _register_small(self, name: str) -> None:
        schema, rows = self._small[name]
        self.spark.createDataFrame(rows, schema).createOrReplaceTempView(name)

    def _delete(self, tree: exp.Delete) -> None:
        target = tree.this
        name = target.name
        alias = target.alias_or_name
        using = tree.args.get("using") or []
        where = tree.args.get("where")
        if not using or where is None:
            raise NotImplementedError("DELETE on Spark needs USING and WHERE")
        match = exp.select("1").from_(using[0])
        for extra in using[1:]:
            match = match.join(extra, join_type="cross")
        match = match.where(where.this)
        keep = (exp.select(exp.Star()).from_(exp.to_table(name).as_(alias))
                .where(exp.Not(this=exp.Exists(this=match))))
        self.save(name, self.spark.sql(_generate(keep)))
