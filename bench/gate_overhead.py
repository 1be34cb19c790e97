"""Each raw gate's time as a fraction of the extract it guards, as an Airflow task pays it.

For one Salesforce object and one ERP table at a given scale, on a private embedded stack:

* stage: ``pipeline.extract`` in a fresh Python process (what a task pays, imports included);
* gate: ``pipeline.gate_raw`` in a fresh Python process (GX import included), and the same
  gate's validation alone once GX is already imported (what a long-lived gate worker would pay).

Last line: ``gate_overhead: max_fraction=…`` (the worst cold fraction). Goal ≤ 0.10.

    .venv/bin/python bench/gate_overhead.py --opportunities 200000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

DS = "2026-06-30"
AS_OF = datetime(2026, 7, 1, tzinfo=UTC)

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from tally.stack.manager import Stack
from tally import pipeline, generator
res = Stack().resources()
start, end = generator.ds_interval({ds!r})
if {what!r} == "extract":
    pipeline.extract(res, {dataset!r}, {ds!r}, start, end)
else:
    pipeline.gate_raw(res, {dataset!r}, {ds!r})
cold = time.perf_counter() - t0
t1 = time.perf_counter()
if {what!r} == "gate":
    pipeline.gate_raw(res, {dataset!r}, {ds!r})
print(json.dumps({{"cold": cold, "warm": time.perf_counter() - t1}}))
"""


def child(what: str, dataset: str, env: dict) -> dict:
    code = CHILD.format(what=what, dataset=dataset, ds=DS)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=100_000)
    args = parser.parse_args()
    console = Console()
    home = tempfile.mkdtemp(prefix="tally-gate-bench-")
    env = {**os.environ, "TALLY_HOME": home}
    os.environ["TALLY_HOME"] = home
    from tally import generator
    from tally.seed import seed_erp, seed_salesforce
    from tally.stack.manager import Stack

    stack = Stack()
    try:
        with console.status("starting a private stack and seeding"):
            stack.up(progress=lambda _: None, with_airflow=False)
            n = args.opportunities
            data = generator.generate(generator.Scale(accounts=max(50, n // 5), opportunities=n, users=40, days=1),
                                      seed=1, as_of=AS_OF)
            seed_salesforce(stack.state["sfsim"]["db"], data)
            seed_erp(stack.postgres("erp"), data)
        rows = []
        for dataset in ("salesforce.Opportunity", "erp.sales_orders"):
            with console.status(f"{dataset}: extract"):
                stage = child("extract", dataset, env)["cold"]
            with console.status(f"{dataset}: gate"):
                gate = child("gate", dataset, env)
            rows.append((dataset, stage, gate["cold"], gate["warm"]))
    finally:
        stack.down(progress=lambda _: None)
    table = Table(title=f"Raw gate vs the extract it guards ({args.opportunities:,} opportunities)")
    for col in ("dataset", "extract s", "gate s (task)", "gate s (GX loaded)", "fraction (task)", "fraction (loaded)"):
        table.add_column(col, justify="right")
    worst = 0.0
    for dataset, stage, cold, warm in rows:
        worst = max(worst, cold / stage)
        table.add_row(dataset, f"{stage:.2f}", f"{cold:.2f}", f"{warm:.2f}", f"{cold / stage:.2f}", f"{warm / stage:.2f}")
    console.print(table)
    print(f"gate_overhead: max_fraction={worst:.2f}")


if __name__ == "__main__":
    main()
