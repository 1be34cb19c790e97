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
