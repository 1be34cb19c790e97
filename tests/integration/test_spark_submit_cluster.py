"""The jobs run under spark-submit as the DAG runs them: locally (``local[2]``) and on a Spark
standalone cluster (a master and a worker started with ``spark-class`` from the pyspark
install), with the same outputs as an in-process run. The jobs' library (curated_lib, the Tally
modules they import) comes only from ``--py-files``: spark-submit runs from another folder, with
PYTHONSAFEPATH so the job's own folder is not on its path."""

from __future__ import annotations

import json
import subprocess

import curated_world as w
import pytest

from tally.lake import Lake
from tally.spark_submit import spark_env, submit_command
from tally_local.spark_cluster import StandaloneCluster

pytestmark = pytest.mark.integration

def submit(job: str, lake_root, master: str, conf: dict | None = None) -> dict:
    cmd = submit_command(job, ["--lake", str(lake_root), "--ds", w.RUN_DS, "--reporting-currency", "USD"],
                         master=master, conf=conf)
    assert cmd[cmd.index("--py-files") + 1].endswith(".zip")
    env = spark_env()
    env["PYTHONSAFEPATH"] = "1"  # not the script's folder: curated_lib only from the zip
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=480, cwd=lake_root.parent)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout  # one JSON summary line, nothing else on stdout
    return json.loads(lines[0])


def snapshot(lake: Lake, name: str) -> tuple[list[dict], dict]:
    manifest = lake.read_manifest(f"curated/{name}", w.RUN_DS)
    key = manifest["key"]
    rows = sorted(lake.read_table(f"curated/{name}", w.RUN_DS).to_pylist(), key=lambda r: r[key])
    keep = ("row_count", "key_checksum", "schema_fingerprint", "inputs", "resolution_counts", "unresolved",
            "link_counts", "unlinked_reasons", "fx_missing", "skipped", "events", "reporting_currency")
    return rows, {k: manifest.get(k) for k in keep}


def test_a_job_under_spark_submit_locally(tmp_path):
    root = tmp_path / "lake"
    lake = w.build_lake(root)
    summary = submit("conformed_customers", root, "local[2]")
    assert summary["rows"] == {"curated.conformed_customers": len(w.expected()["conformed_customers"])}
    assert summary["unresolved"] == 5
    got = {r["customer_id"]: r for r in lake.read_table("curated/conformed_customers", w.RUN_DS).to_pylist()}
    assert got == w.expected()["conformed_customers"]


def test_the_same_job_on_a_standalone_cluster(spark, tmp_path):
    """opportunity_enrichment (joins, windows, broadcasts, FX) submitted to a standalone cluster
    writes what the same job writes in-process on the same lake."""
    local_root, cluster_root = tmp_path / "local", tmp_path / "cluster"
    local, remote = w.build_lake(local_root), w.build_lake(cluster_root)
    for root in (local_root, cluster_root):  # its input
        w.load_job("conformed_customers").run(spark, str(root), w.RUN_DS)
    w.load_job("opportunity_enrichment").run(spark, str(local_root), w.RUN_DS)

    with StandaloneCluster(tmp_path / "spark-standalone", cores=1, memory="1g") as cluster:
        assert cluster.status()["aliveworkers"] == 1
        procs = list(cluster.procs)
        summary = submit("opportunity_enrichment", cluster_root, cluster.url,
                         {"spark.executor.memory": "512m", "spark.cores.max": "1", "spark.executor.cores": "1"})
        apps = cluster.status()["completedapps"]
        assert [a["name"] for a in apps] == [f"tally-opportunity_enrichment-{w.RUN_DS}"]  # it really ran there
    assert len(procs) == 2 and all(p.poll() is not None for p in procs)  # master and worker are gone

    assert set(summary["rows"]) == {"curated.opportunities", "curated.order_links"}
    for name in ("opportunities", "order_links"):
        assert snapshot(remote, name) == snapshot(local, name), name
