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
``INSERT INTO t [(col, ...)] SELECT ...``
    the rows are appended to ``t``'s Parquet folder (a small table becomes one first), cast
    by position to ``t``'s column types and missing columns filled with NULL, as DuckDB does.
    Appends wait until a statement reads ``t``: forty checks appending problems to one table
    are then one Spark job, not forty.
``DELETE FROM t [alias] USING u, ... WHERE cond``
    rewritten as ``t`` minus its rows with a match: ``SELECT * FROM t WHERE NOT EXISTS (...)``.
``CREATE [OR REPLACE] [TEMP] MACRO f(a, ...) AS expr``
    kept by the connection and inlined wherever a later statement calls ``f`` (the
    pseudonymisation's ``lk_hash``, :meth:`linkage.pseudonymise.Pseudonymiser.install`: the
    same HMAC text runs on both engines).
``DROP TABLE t``, and any ``SELECT``: its result is fetched to the driver by ``fetchone``
    or ``fetchall`` (rows), ``fetchnumpy`` or ``to_arrow_table`` (columns, through Arrow: no
    Python object per row, which the edges need), in its ORDER BY.

Parameters (``?``) of :meth:`SparkSQL.execute` are bound as SQL literals.

Rewrites beyond sqlglot's own transpiling (each keeps DuckDB's result bit for bit):

* ``list_aggregate(list(x ORDER BY x), 'product')`` (a product in sorted order, see
  :func:`linkage.graph.product_sql`) becomes ``aggregate(array_sort(collect_list(x)), 1D,
  (acc, v) -> acc * v)``: the same multiplications in the same order.
* ``sum(x ORDER BY k1, k2, ...)`` (a floating-point sum in a fixed order, e.g. scoring's
  intra-cluster weight) becomes ``aggregate(array_sort(collect_list(struct(k1, k2, ...,
  x))), 0D, (acc, r) -> acc + r.x)``: DuckDB's ordered aggregate feeds the sum its rows
  in key order, one addition after the other, and so does the fold. NULL values are skipped
  and a sum of none is NULL, as in DuckDB. Ascending keys only (anything else fails loudly);
  the keys should identify the row, as ``(a, b)`` does an edge (among equal keys neither
  engine promises an order).
* ``range(a, b) alias(col)`` with constant bounds becomes ``VALUES (a), ..., (b - 1)``.

and, for ingest's normalisation (:mod:`linkage.ingest.normalise`; each tested against the
rules' Python twins in ``tests/test_spark.py``):

* ``regexp_full_match(s, p)`` becomes ``s RLIKE '^(?:p)\\z'`` (Java's ``$`` would also match
  before a final line break); ``\\v`` in a pattern becomes ``\\x0B`` (RE2's ``\\v`` is the
  vertical tab alone, Java's a class of seven characters).
* ``regexp_replace``'s ``\\1`` in the replacement becomes Java's ``$1``.
* ``regexp_extract(s, p, ['a', 'b'])`` (a struct of named groups) becomes
  ``named_struct('a', regexp_extract(s, p, 1), 'b', regexp_extract(s, p, 2))``.
* ``list_transform(l, lambda x, i: ...)``: DuckDB's index ``i`` counts from 1, Spark's from 0.
* ``string_split(s, '')`` (the characters of ``s``) drops Java's trailing empty string.
* ``strlen`` (bytes) becomes ``octet_length``; ``list_sum(l)`` an ``aggregate``;
  ``CAST('0x' || h AS INT)`` (DuckDB reads hex; also ``BIGINT``, the MinHash element id of
  :func:`linkage.signals.prompt_bands`) ``CAST(conv(h, 16, 10) AS INT)``;
  ``timezone('UTC', t)`` and ``make_timestamp(epoch_us(t))`` ``CAST(t AS TIMESTAMP_NTZ)``
  (the session time zone is UTC, :func:`linkage.engines.spark.spark_session`);
  ``WITH q AS MATERIALIZED`` a plain ``WITH``;
  ``epoch(t)`` (seconds with their fraction) ``unix_micros(t) / 1000000D``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.simplify import simplify

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkSQL", "number_rows", "to_spark"]


def to_spark(sql: str) -> str:
    """One DuckDB-dialect SELECT as Spark SQL (with the rewrites of this module)."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    return _generate(tree)


def _generate(tree: exp.Expr, macros: dict[str, exp.Create] | None = None) -> str:
    if macros:
        tree = tree.transform(lambda node: _inline(node, macros))
    tree = tree.transform(_rewrite)
    return tree.sql(dialect="spark")


def _inline(node: exp.Expr, macros: dict[str, exp.Create]) -> exp.Expr:
    """A call of a macro replaced by the macro's body, its parameters by the arguments."""
    if not isinstance(node, exp.Anonymous) or node.name.lower() not in macros:
        return node
    macro = macros[node.name.lower()]
    params = [p.name for p in macro.this.expressions]
    if len(params) != len(node.expressions):
        raise NotImplementedError(f"{node.name} takes {len(params)} arguments")
    args = dict(zip(params, node.expressions, strict=True))

    def bind(n: exp.Expr) -> exp.Expr:
        if isinstance(n, exp.Column) and not n.table and n.name in args:
            return exp.paren(args[n.name].copy(), copy=False)
        return n

    # the arguments may call macros too (inlined first, by the outer transform's order)
    return macro.expression.copy().transform(bind).transform(lambda n: _inline(n, macros))


def _rewrite(node: exp.Expr) -> exp.Expr:
    if (isinstance(node, exp.Anonymous) and node.name.lower() == "list_aggregate"
            and len(node.expressions) == 2
            and isinstance(node.expressions[0], exp.ArrayAgg)
            and node.expressions[1].name.lower() == "product"):
        inner = node.expressions[0].this
        value = inner.this if isinstance(inner, exp.Order) else inner
        spark_value = _sub(value)
        return sqlglot.parse_one(
            f"AGGREGATE(ARRAY_SORT(COLLECT_LIST({spark_value})), CAST(1 AS DOUBLE), "
            "(acc, v) -> acc * v)", read="spark")
    if isinstance(node, exp.Sum) and isinstance(node.this, exp.Order):
        return _ordered_sum(node.this)
    if isinstance(node, exp.Table) and isinstance(node.this, exp.GenerateSeries):
        series = node.this
        start, end = (simplify(series.args[k].copy()) for k in ("start", "end"))
        if not (isinstance(start, exp.Literal) and isinstance(end, exp.Literal)):
            raise NotImplementedError("range() with non-constant bounds has no Spark rewrite")
        stop = int(end.name) + (0 if series.args.get("is_end_exclusive") else 1)
        rows = [exp.Tuple(expressions=[exp.Literal.number(i)])
                for i in range(int(start.name), stop)]
        return exp.Values(expressions=rows, alias=node.args.get("alias"))
    return _rewrite_text(node)


def _ordered_sum(order: exp.Order) -> exp.Expr:
    """``sum(x ORDER BY k, ...)`` as a fold over the rows sorted by the keys (module
    docstring): the additions of DuckDB's ordered aggregate, in its order."""
    keys = order.expressions
    if any(k.args.get("desc") for k in keys):
        raise NotImplementedError("sum(... ORDER BY ... DESC) has no Spark rewrite")
    value = _sub(order.this)
    fields = ", ".join(f"{_sub(k.this)} AS _lk_k{i}" for i, k in enumerate(keys))
    # a struct sorts by its fields in turn: the keys, then the value (for equal keys)
    rows = f"COLLECT_LIST(IF({value} IS NULL, NULL, STRUCT({fields}, {value} AS _lk_v)))"
    return _spark(f"CASE WHEN COUNT({value}) > 0 THEN AGGREGATE(ARRAY_SORT({rows}), "
                  "CAST(0 AS DOUBLE), (acc, r) -> acc + r._lk_v) END")


def _spark(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="spark")


def _sub(node: exp.Expr) -> str:
    """A subexpression of a rewritten node, itself rewritten, as Spark SQL (a node that a
    rewrite replaces is not visited again by the outer transform)."""
    return node.transform(_rewrite).sql(dialect="spark")


def _java_pattern(node: exp.Expr) -> exp.Expr:
    if not (isinstance(node, exp.Literal) and node.is_string):
        raise NotImplementedError(f"a regular expression must be a literal: {node.sql()[:80]}")
    return exp.Literal.string(node.name.replace("\\v", "\\x0B"))


def _rewrite_text(node: exp.Expr) -> exp.Expr:
    """The rewrites of ingest's normalisation rules (module docstring)."""
    if isinstance(node, exp.RegexpFullMatch):
        pattern = _java_pattern(node.expression)
        return exp.RegexpLike(this=node.this,
                              expression=exp.Literal.string(f"^(?:{pattern.name})\\z"))
    if isinstance(node, exp.RegexpReplace):
        node.set("expression", _java_pattern(node.expression))
        replacement = node.args.get("replacement")
        if isinstance(replacement, exp.Literal):
            text = replacement.name.replace("$", "\\$")
            node.set("replacement", exp.Literal.string(re.sub(r"\\(\d)", r"$\1", text)))
        node.set("modifiers", None)
        return node
    if isinstance(node, exp.RegexpExtract) and isinstance(node.args.get("group"), exp.Array):
        names = node.args["group"].expressions
        fields = ", ".join(
            f"{n.sql(dialect='spark')}, REGEXP_EXTRACT({_sub(node.this)}, "
            f"{_java_pattern(node.expression).sql(dialect='spark')}, {i})"
            for i, n in enumerate(names, start=1))
        return _spark(f"NAMED_STRUCT({fields})")
    if isinstance(node, exp.Transform):
        fn = node.expression
        if isinstance(fn, exp.Lambda) and len(fn.expressions) == 2:
            index = fn.expressions[1].name

            def one_based(n: exp.Expr) -> exp.Expr:
                if isinstance(n, (exp.Identifier, exp.Column)) and n.name == index and (
                        not isinstance(n.parent, exp.Lambda) or n.arg_key != "expressions"):
                    return exp.paren(exp.Add(this=exp.to_identifier(index),
                                             expression=exp.Literal.number(1)))
                return n

            fn.set("this", fn.this.transform(one_based))
        return node
    if isinstance(node, exp.Split) and isinstance(node.expression, exp.Literal) and (
            node.expression.name == ""):
        text = _sub(node.this)
        return _spark(f"SLICE(SPLIT({text}, ''), 1, LENGTH({text}))")
    if isinstance(node, exp.Lower):
        # Java lower-cases U+0130 to two characters (Unicode's full mapping), DuckDB to 'i'
        return _spark(f"LOWER(REPLACE({_sub(node.this)}, '\u0130', 'i'))")
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        args = node.expressions
        if name == "strlen" and len(args) == 1:
            return _spark(f"OCTET_LENGTH({_sub(args[0])})")
        if name == "list_sum" and len(args) == 1:
            return _spark(f"AGGREGATE({_sub(args[0])}, 0, (a, x) -> a + x)")
        if (name == "timezone" and len(args) == 2 and isinstance(args[0], exp.Literal)
                and args[0].name.upper() == "UTC"):
            return _spark(f"CAST({_sub(args[1])} AS TIMESTAMP_NTZ)")
    if isinstance(node, exp.Cast) and node.to.is_type("int", "bigint"):
        inner = node.this.unnest()
        if (isinstance(inner, exp.DPipe) and isinstance(inner.this, exp.Literal)
                and inner.this.name == "0x"):
            kind = "INT" if node.to.is_type("int") else "BIGINT"
            return _spark(f"CAST(CONV({_sub(inner.expression)}, 16, 10) AS {kind})")
    if isinstance(node, exp.TryCast) and node.to.is_type("timestamptz"):
        # Spark reads an offset as +hh, +hh:mm or Z, DuckDB also as +hhmm
        text = _sub(node.this)
        return _spark(f"TRY_CAST(REGEXP_REPLACE({text}, '([+-][0-9]{{2}})([0-9]{{2}})$', "
                      "'$1:$2') AS TIMESTAMP)")
    if (isinstance(node, exp.UnixToTime) and isinstance(node.this, exp.Anonymous)
            and node.this.name.lower() == "epoch_us" and len(node.this.expressions) == 1
            and node.args.get("scale") is not None and node.args["scale"].name == "6"):
        return _spark(f"CAST({_sub(node.this.expressions[0])} AS TIMESTAMP_NTZ)")
    if isinstance(node, exp.TimeToUnix):
        # DuckDB's epoch() keeps the fraction of a second; Spark's unix_timestamp drops it
        return _spark(f"UNIX_MICROS(CAST({_sub(node.this)} AS TIMESTAMP)) / 1000000D")
    if isinstance(node, exp.CTE) and node.args.get("materialized"):
        node.set("materialized", None)
    return node


def _global_row_number(tree: exp.Expr) -> exp.Window | None:
    """The ``row_number() OVER (ORDER BY ...)`` without PARTITION BY in the SELECT list of
    ``tree``, if there is one."""
    if not isinstance(tree, exp.Select):
        return None
    for e in tree.expressions:
        for w in e.find_all(exp.Window):
            if (isinstance(w.this, exp.RowNumber) and not w.args.get("partition_by")
                    and w.args.get("order") and not w.args.get("spec")):
                return w
    return None


def _same(a: exp.Expr, b: exp.Expr) -> bool:
    return isinstance(a, exp.Window) and a == b


def number_rows(df: DataFrame, keys: Sequence[tuple[str, bool]], name: str) -> DataFrame:
    """``df`` with ``name`` = its row number (from 1) in the order of ``keys`` (column,
    descending), NULLs last as in DuckDB: ``row_number() OVER (ORDER BY keys)``.

    A window without PARTITION BY runs in one Spark task. Here the rows are range-partitioned
    by the keys and sorted within partitions (partition ``i`` holds smaller keys than
    ``i + 1``), each row takes its position within its partition, and each partition's offset
    is the count of the partitions before it: every step is parallel but the per-partition
    counts, a few hundred numbers on the driver. The partitioned rows are written once
    (checkpointed), so positions and counts come from the same rows.
    """
    from pyspark.sql import functions as F

    order = [F.col(k).desc_nulls_last() if desc else F.col(k).asc_nulls_last()
             for k, desc in keys]
    parts = (df.repartitionByRange(*order).sortWithinPartitions(*order)
             .withColumn("_lk_part", F.spark_partition_id())
             .withColumn("_lk_id", F.monotonically_increasing_id())
             .localCheckpoint())
    counts = sorted(parts.groupBy("_lk_part").agg(F.count(F.lit(1)), F.min("_lk_id")).collect())
    offsets, before = [], 0
    for part, n, first in counts:
        offsets.append((part, first, before))
        before += n
    table = df.sparkSession.createDataFrame(
        offsets, "_lk_part int, _lk_first long, _lk_off long")
    # within a partition, monotonically_increasing_id counts up from the partition's first
    return (parts.join(F.broadcast(table), "_lk_part")
            .withColumn(name, F.col("_lk_off") + F.col("_lk_id") - F.col("_lk_first") + 1)
            .drop("_lk_part", "_lk_id", "_lk_first", "_lk_off"))


def _bind(tree: exp.Expr, parameters: Sequence[Any]) -> exp.Expr:
    """``?`` placeholders replaced, in order, by ``parameters`` as literals."""
    values = iter(parameters)

    def literal(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Placeholder):
            return node
        value = next(values)
        if value is None:
            return exp.Null()
        if isinstance(value, bool):
            return exp.Boolean(this=value)
        if isinstance(value, int | float):
            return exp.Literal.number(value)
        if isinstance(value, str):
            return exp.Literal.string(value)
        raise NotImplementedError(f"parameter of type {type(value).__name__}")

    bound = tree.transform(literal)
    if next(values, _END) is not _END:
        raise ValueError("more parameters than placeholders")
    return bound


_END = object()


def materialise(df: DataFrame, path: str) -> DataFrame:
    """Write ``df`` as Parquet at ``path`` (replacing it) and read it back: the result's
    plan is a file scan, so neither lineage nor the plan's size estimate carries over."""
    df.write.mode("overwrite").parquet(path)
    return df.sparkSession.read.parquet(path)


def delete_path(spark: SparkSession, path: str) -> None:
    """Delete ``path`` (a folder, recursively) on whatever file system it names (local,
    ``hdfs://``, ``s3a://``), through the session's Hadoop configuration."""
    jvm: Any = spark._jvm  # type: ignore[attr-defined]
    target = jvm.org.apache.hadoop.fs.Path(path)
    target.getFileSystem(spark._jsc.hadoopConfiguration()).delete(target, True)  # type: ignore[attr-defined]


class SparkSQL:
    """A DuckDB-like connection (``execute``/``executemany``/``fetchone``/``fetchall``/
    ``fetchnumpy``/``to_arrow_table``) whose statements run on Spark; tables are Parquet
    under ``staging``."""

    def __init__(self, spark: SparkSession, staging: str) -> None:
        self.spark = spark
        self.staging = staging.rstrip("/")
        self._rows: list[tuple[Any, ...]] = []
        self._result: DataFrame | None = None  # the last SELECT, until fetched
        self._small: dict[str, tuple[str, list[tuple[Any, ...]]]] = {}
        self._macros: dict[str, exp.Create] = {}
        self._paths: dict[str, str] = {}  # tables that INSERT ... SELECT appends to
        self._pending: dict[str, list[DataFrame]] = {}  # their rows not yet written
        self._versions = itertools.count()

    # -- the DuckDB connection subset ------------------------------------------------------

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> SparkSQL:
        tree = sqlglot.parse_one(sql, read="duckdb")
        if parameters:
            tree = _bind(tree, parameters)
        self._rows, self._result = [], None
        self._flush_reads(tree.expression if isinstance(tree, exp.Insert) else tree)
        if isinstance(tree, exp.Insert) and isinstance(tree.expression, exp.Query):
            self._insert(tree)
        elif isinstance(tree, exp.Create):
            self._create(tree)
        elif isinstance(tree, exp.Delete):
            self._delete(tree)
        elif isinstance(tree, exp.Drop):
            for table in tree.args.get("tables") or [tree.this]:
                self.drop(table.name)
        elif isinstance(tree, exp.Query):
            self._result = self.spark.sql(self.to_spark(tree))
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

    def to_spark(self, tree: exp.Expr) -> str:
        """A parsed DuckDB statement as Spark SQL, with this connection's macros inlined."""
        return _generate(tree, self._macros)

    def register(self, name: str, table: Any) -> SparkSQL:
        """A view of an Arrow table held by the driver (DuckDB's ``register``)."""
        self.spark.createDataFrame(table).createOrReplaceTempView(name)
        return self

    def unregister(self, name: str) -> SparkSQL:
        self.spark.catalog.dropTempView(name)
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._fetched()
        return rows[0] if rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._fetched())

    def to_arrow_table(self) -> pa.Table:
        """The last SELECT's result as an Arrow table, in the query's row order (DuckDB's
        ``to_arrow_table``)."""
        if self._result is None:
            raise ValueError("nothing to fetch: no SELECT ran, or its result was fetched")
        table, self._result = self._result.toArrow(), None
        return table

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        """The last SELECT's columns as numpy arrays, as DuckDB's ``fetchnumpy`` gives them
        (a column with NULLs as a masked array): fetched through Arrow, in the query's row
        order, without a Python object per row."""
        table = self.to_arrow_table()
        out: dict[str, np.ndarray] = {}
        for name, column in zip(table.column_names, table.columns, strict=True):
            values = column.to_numpy(zero_copy_only=False)
            if column.null_count:
                values = np.ma.masked_array(values, mask=column.is_null().to_numpy(
                    zero_copy_only=False))
            out[name] = values
        return out

    def _fetched(self) -> list[tuple[Any, ...]]:
        if self._result is not None:
            self._rows = [tuple(r) for r in self._result.collect()]
            self._result = None
        return self._rows

    # -- tables ----------------------------------------------------------------------------

    def table(self, name: str) -> DataFrame:
        self._flush(name)
        return self.spark.table(name)

    def save(self, name: str, df: DataFrame) -> DataFrame:
        """Write ``df`` as Parquet under the staging folder and register it as ``name``."""
        path = f"{self.staging}/{name}-{next(self._versions)}"
        saved = materialise(df, path)
        saved.createOrReplaceTempView(name)
        self._small.pop(name, None)
        self._paths.pop(name, None)
        self._pending.pop(name, None)
        return saved

    def append(self, name: str, df: DataFrame, columns: Sequence[str] | None = None) -> None:
        """Append ``df``'s rows to the table ``name``, by position into ``columns`` (default:
        the table's first columns), cast to the table's types; other columns get NULL."""
        from pyspark.sql import functions as F

        existing = self.spark.table(name)
        cols = list(columns or existing.columns[: len(df.columns)])
        if len(cols) != len(df.columns):
            raise ValueError(f"INSERT INTO {name}: {len(df.columns)} values for {len(cols)} "
                             "columns")
        # positional names: a SELECT's own names may repeat ('?' bound twice to the same value)
        df = df.toDF(*[f"_lk_c{i}" for i in range(len(df.columns))])
        position = {c.lower(): i for i, c in enumerate(cols)}
        out = df.select([
            (F.col(f"_lk_c{position[f.name.lower()]}") if f.name.lower() in position
             else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in existing.schema.fields])
        self._pending.setdefault(name, []).append(out)

    def _flush(self, name: str) -> None:
        """Write the rows waiting to be appended to ``name``, all in one job."""
        pending = self._pending.pop(name, [])
        if not pending:
            return
        path = self._paths.get(name)
        if path is None:  # the table's rows so far start the folder
            path = f"{self.staging}/{name}-{next(self._versions)}"
            self.spark.table(name).write.mode("overwrite").parquet(path)
            self._small.pop(name, None)
            self._paths[name] = path
        rows = pending[0]
        for more in pending[1:]:
            rows = rows.unionByName(more)
        rows.write.mode("append").parquet(path)
        self.spark.read.parquet(path).createOrReplaceTempView(name)

    def drop(self, name: str) -> None:
        self._small.pop(name, None)
        self._paths.pop(name, None)
        self._pending.pop(name, None)
        self.spark.catalog.dropTempView(name)

    def dataframe(self, sql: str) -> DataFrame:
        """A DuckDB-dialect SELECT as a DataFrame, for work that continues in Spark's own API
        (rows waiting to be appended to the tables it reads are written first)."""
        tree = sqlglot.parse_one(sql, read="duckdb")
        self._flush_reads(tree)
        return self.query(tree)

    def _flush_reads(self, tree: exp.Expr | None) -> None:
        """Write the rows waiting to be appended to every table ``tree`` reads."""
        for table in tree.find_all(exp.Table) if tree else []:
            self._flush(table.name)

    def query(self, tree: exp.Expr) -> DataFrame:
        """A parsed DuckDB query as a DataFrame; ``row_number() OVER (ORDER BY ...)`` over
        the whole result (a table's dense numbering: ``kid``, ``idx``) is computed by
        :func:`number_rows`, in parallel, rather than by Spark's window in one partition."""
        window = _global_row_number(tree)
        if window is None:
            return self.spark.sql(self.to_spark(tree))
        assert isinstance(tree, exp.Select)
        inner = tree.copy()
        inner.set("order", None)  # a stored table's row order means nothing on Spark
        outputs: list[tuple[str, exp.Expr]] = []  # (alias, expression over _lk_rn)
        kept: list[exp.Expr] = []
        for i, e in enumerate(inner.expressions):
            # the output's name as DuckDB gives it (a CREATE's column); INSERT goes by position
            alias = e.alias if isinstance(e, exp.Alias) else (
                e.name if isinstance(e, exp.Column) else f"_lk_o{i}")
            if any(_same(w, window) for w in e.find_all(exp.Window)):
                body = e.this if isinstance(e, exp.Alias) else e
                rest = [c for c in body.find_all(exp.Column) if not c.find_ancestor(exp.Window)]
                if rest:
                    raise NotImplementedError("a global row_number() combined with columns")
                outputs.append((alias, body.transform(
                    lambda n: exp.column("_lk_rn") if _same(n, window) else n)))
            else:
                kept.append(exp.alias_(e.this if isinstance(e, exp.Alias) else e, f"_lk_o{i}"))
                outputs.append((alias, exp.column(f"_lk_o{i}")))
        order = window.args["order"].expressions
        keys = [exp.alias_(o.this.copy(), f"_lk_k{j}") for j, o in enumerate(order)]
        inner.set("expressions", kept + keys)
        df = self.spark.sql(self.to_spark(inner))
        numbered = number_rows(df, [(f"_lk_k{j}", bool(o.args.get("desc")))
                                    for j, o in enumerate(order)], "_lk_rn")
        numbered.createOrReplaceTempView("_lk_numbered")
        final = exp.select(*(exp.alias_(e, a) for a, e in outputs)).from_("_lk_numbered")
        return self.spark.sql(self.to_spark(final))

    def _insert(self, tree: exp.Insert) -> None:
        target = tree.this
        columns = None
        if isinstance(target, exp.Schema):
            columns = [c.name for c in target.expressions]
            target = target.this
        self.append(target.name, self.query(tree.expression), columns)

    def _create(self, tree: exp.Create) -> None:
        target = tree.this
        query = tree.expression
        if str(tree.args.get("kind", "")).upper() == "MACRO":
            self._macros[target.this.name.lower()] = tree
        elif isinstance(target, exp.Schema):  # CREATE TABLE t (col TYPE, ...)
            cols = []
            for col in target.expressions:
                kind = col.args["kind"]
                # DuckDB's TIMESTAMP (naive, UTC here) travels to Spark as its TIMESTAMP, as
                # Arrow's naive timestamps do; sqlglot would make it TIMESTAMP_NTZ
                spark_type = ("TIMESTAMP" if kind.is_type("timestamp")
                              else kind.sql(dialect="spark"))
                cols.append(f"`{col.name}` {spark_type}")
            name = target.this.name
            self._paths.pop(name, None)  # OR REPLACE: the rows of an earlier table go
            self._pending.pop(name, None)
            self._small[name] = (", ".join(cols), [])
            self._register_small(name)
        elif isinstance(query, exp.Query):
            self.save(target.name, self.query(query))
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
        self.save(name, self.spark.sql(self.to_spark(keep)))
