"""A small Data Docs site for tests: every shipped suite's page, a failed and a passed validation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from tally import catalog
from tally.lake import Lake, PartitionWriter, arrow_schema
from tally.quality import docs, parquet

OPP = catalog.SALESFORCE["Opportunity"]
TS = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def build_site(root: Path) -> Path:
    """A site with every shipped suite's page, a failed and a passed validation (the gates write
    to ``TALLY_DATA_DOCS_DIR``, which the caller sets to ``root / "data_docs"``)."""
    site = root / "data_docs"
    assert docs.docs_dir() == site.resolve(), "set TALLY_DATA_DOCS_DIR to root/data_docs"
    lake = Lake(str(root / "lake"))
    schema = arrow_schema(OPP)
    for ds, bad in (("2024-01-02", True), ("2024-01-03", False)):
        rows = [{"Id": f"006{i:015d}", "Name": f"Deal {i}", "AccountId": None, "OwnerId": "005000000000000AAA",
                 "StageName": "Nurture" if bad and i == 3 else "Prospecting", "Amount": Decimal("1.5"),
                 "Probability": 10.0, "CloseDate": None, "IsClosed": False, "IsWon": False, "IsDeleted": False,
                 "CreatedDate": TS, "SystemModstamp": TS} for i in range(20)]
        files = PartitionWriter(lake, OPP.lake_path, ds).write(schema, [pa.RecordBatch.from_pylist(rows, schema=schema)])
        lake.write_manifest(OPP.lake_path, ds, {"files": files, "row_count": 20})
        result = parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, ds, {"source_count": 20})
        assert result.success is not bad and result.data_docs
    docs.build_index(site)
    return site
