"""spark_checksum / checksum_sql equal tally.lake.checksum.checksum; session helpers behave."""

from __future__ import annotations

import os
import sys

import pytest

from tally.lake.checksum import (
    MOD,
    checksum,
    checksum_sql,
    key_hash,
    spark_checksum,
    spark_count_and_checksum,
)
from tally.spark_session import (
    build_session,
    default_conf,
    master_cores,
    shuffle_partitions,
    spark_home,
)
from tally.spark_submit import spark_env


@pytest.fixture(scope="session")
def spark():
    """One SparkSession for the whole pytest session (getOrCreate shares it across modules)."""
    session = build_session("tally-tests", master="local[2]")
    yield session
    session.stop()


def _keys_with_high_hashes(n: int = 400) -> list[str]:
    keys = [f"006{i:015d}" for i in range(n)]
    assert any(key_hash(k) >= 2**63 for k in keys), "need keys whose hash sets the top bit"
    assert any(key_hash(k) < 2**63 for k in keys)
    return keys


def test_matches_python_including_top_bit_hashes(spark):
    keys = _keys_with_high_hashes()
    high = [k for k in keys if key_hash(k) >= 2**63]
    df = spark.createDataFrame([(k,) for k in keys], "id string")
    # the total overflows 2**64 many times over: the mod must be exact
    assert sum(key_hash(k) for k in keys) > 100 * MOD
    assert spark_checksum(df, "id") == checksum(keys)
    assert spark_count_and_checksum(df, "id") == (len(keys), checksum(keys))
    # only top-bit keys, a single top-bit key, duplicates (sum, not xor: duplicates count)
    assert spark_checksum(df.filter(df.id.isin(high)), "id") == checksum(high)
    one = spark.createDataFrame([(high[0],)], "id string")
    assert spark_checksum(one, "id") == checksum([high[0]]) == format(key_hash(high[0]), "016x")
    dup = spark.createDataFrame([(high[0],), (high[0],)], "id string")
    assert spark_checksum(dup, "id") == checksum([high[0], high[0]])


def test_empty_and_leading_zero_and_non_string_keys(spark):
    empty = spark.createDataFrame([], "id string")
    assert spark_checksum(empty, "id") == checksum([]) == "0000000000000000"
    # a key whose hash prints with leading zeros must still be 16 hex digits
    small = next(f"k{i}" for i in range(100_000) if key_hash(f"k{i}") < 2**56)
    df = spark.createDataFrame([(small,)], "id string")
    assert spark_checksum(df, "id") == checksum([small])
    assert len(checksum([small])) == 16 and checksum([small]).startswith("0")
    ints = spark.createDataFrame([(i,) for i in range(50)], "id bigint")
    assert spark_checksum(ints, "id") == checksum(range(50))


def test_sql_expression_matches(spark):
    keys = _keys_with_high_hashes(50) + ["Ünïcødé-ключ"]
    spark.createDataFrame([(k,) for k in keys], "`Id` string").createOrReplaceTempView("chk_keys")
    got = spark.sql(f"SELECT {checksum_sql('`Id`')} AS c FROM chk_keys").first()["c"]  # noqa: S608
    assert got == checksum(keys)


def test_session_defaults(spark):
    conf = spark.conf
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.sql.adaptive.enabled") == "true"
    assert conf.get("spark.sql.adaptive.coalescePartitions.enabled") == "true"
    assert int(conf.get("spark.sql.shuffle.partitions")) == shuffle_partitions(spark.sparkContext.master)
    assert spark.sparkContext.getConf().get("spark.ui.enabled") == "false"
    assert os.environ["SPARK_LOCAL_IP"]


def test_pure_helpers(monkeypatch):
    monkeypatch.delenv("TALLY_SPARK_SHUFFLE_PARTITIONS", raising=False)
    assert master_cores("local[3]") == 3 and master_cores("local[4,2]") == 4
    assert shuffle_partitions("local[1]") == 2  # at least 2
    assert shuffle_partitions("local[8]") == 16
    monkeypatch.setenv("TALLY_SPARK_SHUFFLE_PARTITIONS", "7")
    assert shuffle_partitions("local[8]") == 7
    monkeypatch.setenv("TALLY_SPARK_DRIVER_MEMORY", "3g")
    assert default_conf("local[2]")["spark.driver.memory"] == "3g"
    assert "spark.ui.enabled" not in default_conf("yarn")

    env = spark_env({"PATH": "/usr/bin", "PYTHONPATH": "/x"})
    assert env["SPARK_HOME"] == spark_home()
    assert os.path.isfile(os.path.join(env["SPARK_HOME"], "bin", "spark-submit"))
    assert env["PYSPARK_PYTHON"] == sys.executable
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert env["PYTHONPATH"].split(os.pathsep)[-1] == "/x"
    assert spark_env({"SPARK_LOCAL_IP": "10.0.0.1"})["SPARK_LOCAL_IP"] == "10.0.0.1"
