"""Every in-process form of the key checksum (tally.lake.checksum) against the shared test vector
(tests/support/checksum_vector.json): Python, Arrow, combining and removing, Spark (a local
session). The SQL forms run on real servers in tests/integration/test_checksum_vector_sql.py."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from tally.lake.checksum import (
    KeyChecksum,
    checksum,
    checksum_col,
    checksum_sql,
    combine,
    key_hash,
    mysql_sql,
    postgres_sql,
)

VECTOR = json.loads((Path(__file__).parents[2] / "support" / "checksum_vector.json").read_text())["cases"]
ARROW = {"string": pa.string(), "int": pa.int64()}


def _ids(case: dict) -> str:
    return case["name"]


@pytest.mark.parametrize("case", VECTOR, ids=_ids)
def test_python_form(case):
    assert checksum(case["keys"]) == case["checksum"]
    assert len(case["checksum"]) == 16


@pytest.mark.parametrize("case", VECTOR, ids=_ids)
def test_arrow_form(case):
    acc = KeyChecksum()
    column = pa.array(case["keys"], ARROW[case["type"]])
    acc.update_arrow(column.slice(0, 2))  # two batches, as a writer sees them
    acc.update_arrow(pa.chunked_array([column.slice(2)], ARROW[case["type"]]))
    assert (acc.hexdigest(), acc.count) == (case["checksum"], len(case["keys"]))


def test_sums_of_64_bit_hashes_combine_and_come_off_again():
    every = [k for case in VECTOR for k in case["keys"]]
    assert combine(case["checksum"] for case in VECTOR) == checksum(every)
    acc = KeyChecksum.from_hex(checksum(every), len(every))
    first = VECTOR[0]["keys"]
    acc.remove(first)
    assert acc.hexdigest() == checksum(every[len(first):]) and acc.count == len(every) - len(first)
    # a database sums the hashes as signed bigints: congruent modulo 2**64, the same checksum
    signed = KeyChecksum()
    signed.add_sum(sum(h - 2**64 if h >= 2**63 else h for h in map(key_hash, every)), len(every))
    assert signed.hexdigest() == checksum(every)


def test_sql_forms_are_built_around_the_quoted_column():
    assert mysql_sql("`k`") == (
        "LPAD(LOWER(CONV(MOD(COALESCE(SUM(CAST(CONV(SUBSTRING(MD5(CAST(`k` AS CHAR)), 1, 16), 16, 10) "
        "AS UNSIGNED)), 0), 18446744073709551616), 10, 16)), 16, '0')")
    assert "md5((\"k\")::text)" in postgres_sql('"k"')
    assert "md5(CAST(`k` AS STRING))" in checksum_sql("`k`")


@pytest.fixture(scope="module")
def spark():
    from tally.spark_session import build_session

    return build_session("tally-tests", master="local[2]")  # getOrCreate: shared with other modules


def test_spark_forms(spark):
    for case in VECTOR:
        kind = "string" if case["type"] == "string" else "bigint"
        frame = spark.createDataFrame([(k,) for k in case["keys"]], f"k {kind}")
        assert frame.agg(checksum_col("k")).first()[0] == case["checksum"], case["name"]
        frame.createOrReplaceTempView("vector_keys")
        assert spark.sql(f"SELECT {checksum_sql('k')} FROM vector_keys").first()[0] == case["checksum"], case["name"]  # noqa: S608
