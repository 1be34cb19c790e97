"""The key checksum: order-independent, one definition, computed alike in Python, Arrow,
Postgres, MySQL/MariaDB and Spark.

    key_hash(key) = int(md5(str(key))[:16], 16)          (the first 64 bits of the md5)
    checksum(keys) = (sum of key_hash over keys) mod 2**64, as 16 lowercase hex digits

Summation (not XOR) means a duplicated key changes the checksum, the checksums of disjoint
sets add up (``combine``), a set's keys can be taken off again (``KeyChecksum.remove``), and
the same definition is cheap to push down as SQL. The forms:

- Python: ``key_hash``, ``KeyChecksum`` (a streaming accumulator), ``checksum``, ``combine``;
- Arrow: ``KeyChecksum.update_arrow`` (a key column of a record batch);
- Postgres: ``postgres_key_hash_sql`` (per row), ``postgres_sql`` (the aggregate), with
  ``POSTGRES_HELPER_DDL``;
- MySQL/MariaDB: ``mysql_key_hash_sql`` (per row), ``mysql_sql`` (the aggregate);
- Spark: ``checksum_col`` (an aggregate Column), ``checksum_sql`` (Spark SQL),
  ``spark_checksum`` / ``spark_count_and_checksum`` (pyspark is imported only when called).

``tests/unit/test_checksum_vector.py`` checks every form against one shared test vector
(``tests/support/checksum_vector.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import md5
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # pyspark is heavy to import and not needed outside Spark
    from pyspark.sql import Column, DataFrame

MOD = 2**64
EMPTY = "0000000000000000"


# -- Python and Arrow -------------------------------------------------------------------------
def key_hash(key: object) -> int:
    """The first 64 bits of ``md5(str(key))``, unsigned."""
    return int.from_bytes(md5(str(key).encode()).digest()[:8], "big")


def hash_sum(keys: Iterable[object]) -> int:
    """The sum of ``key_hash`` over ``keys``, modulo 2**64."""
    return sum(key_hash(k) for k in keys) % MOD


def to_hex(total: int) -> str:
    """A hash sum as the checksum's text: 16 lowercase hex digits."""
    return format(total % MOD, "016x")


def combine(checksums: Iterable[str]) -> str:
    """The checksum of the union (with repeats) of sets whose checksums are given."""
    return to_hex(sum(int(c, 16) for c in checksums))


class KeyChecksum:
    """Streaming accumulator: add keys (or sums of their hashes), read ``hexdigest()``."""

    def __init__(self, total: int = 0, count: int = 0) -> None:
        self.total = total % MOD
        self.count = count

    @classmethod
    def from_hex(cls, checksum_hex: str, count: int = 0) -> KeyChecksum:
        return cls(int(checksum_hex, 16), count)

    def update(self, keys: Iterable[object]) -> None:
        total, count = 0, 0
        for key in keys:
            total += key_hash(key)
            count += 1
        self.add_sum(total, count)

    def update_arrow(self, keys: pa.Array | pa.ChunkedArray) -> None:
        """Add a key column: integer and string keys are rendered as text by Arrow (the text
        ``str`` gives), others as their Python values."""
        if pa.types.is_integer(keys.type) or pa.types.is_large_string(keys.type):
            keys = pc.cast(keys, pa.string())
        self.update(keys.to_pylist())

    def remove(self, keys: Iterable[object]) -> None:
        """Take keys off again (ones that were added, e.g. by a source's own sum)."""
        keys = list(keys)
        self.add_sum(-hash_sum(keys), -len(keys))

    def add_sum(self, total: int, count: int) -> None:
        """Add ``count`` keys whose hashes sum to ``total`` (signed or unsigned: congruent mod 2**64)."""
        self.total = (self.total + total) % MOD
        self.count += count

    def add(self, other: KeyChecksum) -> None:
        self.add_sum(other.total, other.count)

    def hexdigest(self) -> str:
        return to_hex(self.total)


def checksum(keys: Iterable[object]) -> str:
    acc = KeyChecksum()
    acc.update(keys)
    return acc.hexdigest()


# -- Postgres ---------------------------------------------------------------------------------
# Postgres 18 casts bytea to integers: the first 8 bytes of the decoded md5 ARE the hash, as
# a signed bigint. Older servers parse the hex digits through bit(64), which costs as much
# again as the md5 itself.
PG_BYTEA_TO_BIGINT = 180000


def postgres_key_hash_sql(column_sql: str, server_version: int = 0) -> str:
    """SQL expression: ``key_hash`` of ``column_sql`` as a *signed* bigint (the same 64 bits;
    congruent to the unsigned hash modulo 2**64). One ``md5`` per row. ``server_version`` is
    the server's ``server_version_num`` (``conn.info.server_version``); 0 = unknown (the form
    every version understands)."""
    digest = f"md5(({column_sql})::text)"
    if server_version >= PG_BYTEA_TO_BIGINT:
        return f"substr(decode({digest}, 'hex'), 1, 8)::bigint"
    return f"('x' || substr({digest}, 1, 16))::bit(64)::bigint"


def postgres_sql(column_sql: str, server_version: int = 0) -> str:
    """SQL expression (an aggregate) computing the checksum of ``column_sql`` in Postgres.

    ``column_sql`` must already be a safely quoted identifier or expression. The signed hashes
    are summed as they are: unsigned and signed hashes are congruent modulo 2**64, so the sum
    reduced into [0, 2**64) is the checksum. ``sum(bigint)`` accumulates in 128-bit integers
    (fast, exact); one ``md5`` per row. ``server_version`` as for ``postgres_key_hash_sql``.
    Needs ``POSTGRES_HELPER_DDL``.
    """
    total = f"coalesce(sum({postgres_key_hash_sql(column_sql, server_version)}), 0)"
    return f"lpad(ops.to_hex_numeric(mod(mod({total}, {MOD}) + {MOD}, {MOD})), 16, '0')"


# to_hex() in Postgres only takes bigint; this helper handles numeric up to 2**64. PARALLEL SAFE:
# a query calling an unmarked function never gets a parallel plan (a big slice's md5 scan can).
POSTGRES_HELPER_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE OR REPLACE FUNCTION ops.to_hex_numeric(n numeric) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN n >= 9223372036854775808
              THEN to_hex((n - 18446744073709551616)::bigint)
              ELSE to_hex(n::bigint) END
$$;
"""


# -- MySQL / MariaDB --------------------------------------------------------------------------
def mysql_key_hash_sql(column_sql: str) -> str:
    """SQL expression: ``key_hash`` of ``column_sql`` as an unsigned bigint (``column_sql`` a
    quoted identifier or expression)."""
    return f"CAST(CONV(SUBSTRING(MD5(CAST({column_sql} AS CHAR)), 1, 16), 16, 10) AS UNSIGNED)"


def mysql_sql(column_sql: str) -> str:
    """SQL expression (an aggregate) computing the checksum of ``column_sql`` in MySQL/MariaDB:
    ``SUM`` of unsigned bigints is an exact DECIMAL; ``CONV`` renders the remainder in hex."""
    total = f"COALESCE(SUM({mysql_key_hash_sql(column_sql)}), 0)"
    return f"LPAD(LOWER(CONV(MOD({total}, {MOD}), 10, 16)), 16, '0')"


# -- Spark ------------------------------------------------------------------------------------
MOD_SQL = str(MOD)


def _hash_halves(col: Column) -> tuple[Column, Column]:
    """The first 64 bits of md5(key) as two unsigned 32-bit halves, each a bigint.

    Summing bigints is several times faster than summing the 64-bit value as decimal(38,0),
    which Spark does with BigDecimal: the checksum of 5M keys took 6.1 s that way, 2.8 s this
    way. The halves' sums stay exact up to 2**31 rows per aggregate."""
    from pyspark.sql import functions as F

    hexed = F.md5(col.cast("string"))
    return (F.conv(F.substring(hexed, 1, 8), 16, 10).cast("long"),
            F.conv(F.substring(hexed, 9, 8), 16, 10).cast("long"))


def checksum_sql(column_sql: str) -> str:
    """Spark SQL aggregate expression computing the checksum of ``column_sql``.

    ``column_sql`` must already be a safely quoted identifier or expression.
    """
    hexed = f"md5(CAST({column_sql} AS STRING))"
    hi, lo = (f"CAST(conv(substr({hexed}, {at}, 8), 16, 10) AS BIGINT)" for at in (1, 9))
    total = (f"CAST(coalesce(sum({hi}), 0) AS DECIMAL(38,0)) * CAST({2**32} AS DECIMAL(38,0))"
             f" + CAST(coalesce(sum({lo}), 0) AS DECIMAL(38,0))")
    return f"lower(lpad(conv(CAST(pmod({total}, CAST({MOD_SQL} AS DECIMAL(38,0))) AS STRING), 10, 16), 16, '0'))"


def checksum_col(key: Column | str) -> Column:
    """Aggregate column: the key checksum as 16 lowercase hex digits."""
    from pyspark.sql import functions as F

    hi, lo = _hash_halves(F.col(key) if isinstance(key, str) else key)
    dec = "decimal(38,0)"
    total = (F.coalesce(F.sum(hi), F.lit(0)).cast(dec) * F.lit(2**32).cast(dec)
             + F.coalesce(F.sum(lo), F.lit(0)).cast(dec))
    mod = F.pmod(total, F.lit(MOD_SQL).cast(dec))
    return F.lower(F.lpad(F.conv(mod.cast("string"), 10, 16), 16, "0"))


def spark_count_and_checksum(df: DataFrame, key_col: str) -> tuple[int, str]:
    """Row count and key checksum of ``df`` in one pass."""
    from pyspark.sql import functions as F

    row = df.agg(F.count(F.lit(1)).alias("n"), checksum_col(key_col).alias("c")).first()
    return int(row["n"]), str(row["c"])


def spark_checksum(df: DataFrame, key_col: str) -> str:
    """``checksum(df[key_col])``, computed by Spark."""
    return spark_count_and_checksum(df, key_col)[1]
