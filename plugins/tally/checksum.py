"""Order-independent key checksum, computable identically in Python, Spark and Postgres.

checksum(keys) = (sum over keys of int(md5(key)[:16], 16)) mod 2**64, rendered as a
16-digit lowercase hex string. Summation (not XOR) means a duplicated key changes the
checksum, and the same definition is cheap to push down as SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

MOD = 2**64


def key_hash(key: object) -> int:
    return int(hashlib.md5(str(key).encode()).hexdigest()[:16], 16)


class KeyChecksum:
    """Streaming accumulator: ``update`` with batches of keys, read ``hexdigest()``."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def update(self, keys: Iterable[object]) -> None:
        for key in keys:
            self.total += key_hash(key)
            self.count += 1

    def hexdigest(self) -> str:
        return format(self.total % MOD, "016x")


def checksum(keys: Iterable[object]) -> str:
    acc = KeyChecksum()
    acc.update(keys)
    return acc.hexdigest()


def postgres_key_hash_sql(column_sql: str) -> str:
    """SQL expression: ``key_hash`` of ``column_sql`` as a *signed* bigint (the same 64 bits;
    congruent to the unsigned hash modulo 2**64). One ``md5`` per row."""
    return f"('x' || substr(md5(({column_sql})::text), 1, 16))::bit(64)::bigint"


def postgres_sql(column_sql: str) -> str:
    """SQL expression (an aggregate) computing the checksum of ``column_sql`` in Postgres.

    ``column_sql`` must already be a safely quoted identifier or expression. The signed hashes
    are summed as they are: unsigned and signed hashes are congruent modulo 2**64, so the sum
    reduced into [0, 2**64) is the checksum. ``sum(bigint)`` accumulates in 128-bit integers
    (fast, exact); one ``md5`` per row.
    """
    total = f"coalesce(sum({postgres_key_hash_sql(column_sql)}), 0)"
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
