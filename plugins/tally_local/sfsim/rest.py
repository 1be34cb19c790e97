"""The simulator's REST data endpoints: versions, resources, limits, describe and SOQL queries.

* ``GET /services/data/`` versions (no auth, as in Salesforce), ``/services/data/v{ver}/`` resources
* ``GET /services/data/v{ver}/query|queryAll?q=SOQL`` and ``.../query/{locator}-{offset}`` pages
* ``GET /services/data/v{ver}/sobjects/`` and ``.../sobjects/{Obj}/describe``
* ``GET /services/data/v{ver}/limits``

Query results are snapshots taken when the query runs (rows are serialised once and paged from
memory, see :meth:`tally_local.sfsim.server.SalesforceSimulator.open_cursor`), so a cursor never
sees later writes. Describe shows :attr:`tally_local.sfsim.server.SalesforceSimulator.catalog`,
the store's catalog with any describe drift applied.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from tally.catalog import Dataset, Field
from tally_local.sfsim import soql

if TYPE_CHECKING:
    from tally_local.sfsim.handler import Handler

MIN_BATCH_SIZE, MAX_BATCH_SIZE = 200, 2000
KEY_PREFIXES = {
    "User": "005",
    "Account": "001",
    "Opportunity": "006",
    "Contact": "003",
    "OpportunityHistory": "008",
    "DatedConversionRate": "04w",
    "Task": "00T",
}
API_VERSIONS = [
    ("Summer '23", "58.0"),
    ("Winter '24", "59.0"),
    ("Spring '24", "60.0"),
    ("Summer '24", "61.0"),
    ("Winter '25", "62.0"),
    ("Spring '25", "63.0"),
    ("Summer '25", "64.0"),
    ("Winter '26", "65.0"),
]


# --- endpoints --------------------------------------------------------------------------------


def versions(h: Handler, match: re.Match[str]) -> None:
    h.reply(200, [{"label": lbl, "url": f"/services/data/v{v}", "version": v} for lbl, v in API_VERSIONS])


def resources(h: Handler, match: re.Match[str]) -> None:
    base = f"/services/data/v{match['ver']}"
    names = ("limits", "query", "queryAll", "sobjects")
    doc = {name: f"{base}/{name}" for name in names}
    doc["jobs"] = {"ingest": f"{base}/jobs/ingest", "query": f"{base}/jobs/query"}
    h.reply(200, doc)


def limits(h: Handler, match: re.Match[str]) -> None:
    daily_max = h.server.faults.api_daily_max
    remaining = max(0, daily_max - h.usage)
    h.reply(
        200,
        {
            "DailyApiRequests": {"Max": daily_max, "Remaining": remaining},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
        },
    )


def global_describe(h: Handler, match: re.Match[str]) -> None:
    objects = [_describe(ds, match["ver"], with_fields=False) for ds in h.server.catalog.values()]
    h.reply(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects})


def describe(h: Handler, match: re.Match[str]) -> None:
    ds = next((d for n, d in h.server.catalog.items() if n.lower() == match["obj"].lower()), None)
    if ds is None:
        h.reply_error(404, "NOT_FOUND", "The requested resource does not exist")
        return
    h.reply(200, _describe(ds, match["ver"], with_fields=True))


def query(h: Handler, match: re.Match[str]) -> None:
    endpoint, ver = match["ep"], match["ver"]
    text = h.params.get("q", [""])[0]
    try:
        parsed = soql.parse(text, h.server.catalog)
    except soql.SoqlError as exc:
        h.reply_error(400, exc.error_code, exc.message)
        return
    include_deleted = endpoint == "queryAll"
    store = h.server.store
    if parsed.is_count:
        total = store.count_query(parsed, include_deleted=include_deleted)
        h.reply(200, {"totalSize": total, "done": True, "records": []})
        return
    name = parsed.object_name
    records = [
        json.dumps(
            {"attributes": {"type": name, "url": f"/services/data/v{ver}/sobjects/{name}/{key}"}, **rec}
        )
        for key, rec in store.query(parsed, include_deleted=include_deleted)
    ]
    page_size = _page_size(h)
    locator = h.server.open_cursor(records, page_size, endpoint) if len(records) > page_size else ""
    _send_page(h, records, 0, page_size, locator, ver, endpoint)


def query_more(h: Handler, match: re.Match[str]) -> None:
    cursor = h.server.get_cursor(match["locator"])
    offset = int(match["offset"])
    if cursor is None or offset > len(cursor.records):
        h.reply_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return
    _send_page(h, cursor.records, offset, cursor.page_size, match["locator"], match["ver"], cursor.endpoint)


def _page_size(h: Handler) -> int:
    """The server's page size, lowered by ``Sforce-Query-Options: batchSize=N`` (200..2000)."""
    m = re.search(r"batchSize\s*=\s*(\d+)", h.headers.get("Sforce-Query-Options", ""))
    if not m:
        return h.server.page_size
    return min(h.server.page_size, max(MIN_BATCH_SIZE, min(MAX_BATCH_SIZE, int(m.group(1)))))


def _send_page(
    h: Handler, records: list[str], offset: int, size: int, locator: str, ver: str, endpoint: str
) -> None:
    end = offset + size
    head: dict[str, Any] = {"totalSize": len(records), "done": end >= len(records)}
    if not head["done"]:
        head["nextRecordsUrl"] = f"/services/data/v{ver}/{endpoint}/{locator}-{end}"
    body = json.dumps(head)[:-1] + ', "records": [' + ", ".join(records[offset:end]) + "]}"
    h.reply(200, body)


# --- describe documents -----------------------------------------------------------------------

_SYSTEM_FIELDS = {"Id", "IsDeleted", "CreatedDate", "SystemModstamp"}
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "double": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
_PRECISION = {"currency": (18, 2), "percent": (3, 0), "double": (18, 0)}


def describe_type(f: Field) -> str:
    """The describe ``type`` of a catalog field."""
    if f.type == "id":
        return "id" if f.name == "Id" else "reference"
    if f.name == "Probability" and f.type == "double":
        return "percent"
    return {"bool": "boolean", "decimal": "currency"}.get(f.type, f.type)


def _label(name: str) -> str:
    """``SystemModstamp`` -> ``System Modstamp``, ``OwnerId`` -> ``Owner ID``, ``Region__c`` -> ``Region``."""
    label = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.removesuffix("__c"))
    return label[:-2] + "ID" if label.endswith(" Id") or label == "Id" else label


def _describe_field(ds: Dataset, f: Field) -> dict[str, Any]:
    kind = describe_type(f)
    length = {"id": 18, "reference": 18, "string": 255}.get(kind, 0)
    precision, scale = _PRECISION.get(kind, (0, 0))
    target = ("User" if f.name == "OwnerId" else f.name.removesuffix("Id")) if kind == "reference" else None
    system = f.name in _SYSTEM_FIELDS
    return {
        "name": f.name,
        "label": _label(f.name),
        "type": kind,
        "soapType": _SOAP_TYPES[kind],
        "nillable": f.nullable,
        "length": length,
        "byteLength": length * 3,
        "precision": precision,
        "scale": scale,
        "digits": 9 if kind == "int" else 0,
        "custom": f.name.endswith("__c"),
        "calculated": False,
        "createable": not system,
        "updateable": not system,
        "defaultedOnCreate": system or kind == "boolean",
        "filterable": True,
        "sortable": True,
        "idLookup": f.name == ds.key,
        "unique": False,
        "externalId": False,
        "referenceTo": [target] if target else [],
        "relationshipName": f.name.removesuffix("Id") if target else None,
        "picklistValues": [],
    }


def _describe(ds: Dataset, ver: str, *, with_fields: bool) -> dict[str, Any]:
    base = f"/services/data/v{ver}/sobjects/{ds.name}"
    label = _label(ds.name)
    doc: dict[str, Any] = {
        "name": ds.name,
        "label": label,
        "labelPlural": label[:-1] + "ies" if label.endswith("y") else label + "s",
        "keyPrefix": KEY_PREFIXES.get(ds.name),
        "custom": ds.name.endswith("__c"),
        "queryable": True,
        "retrieveable": True,
        "searchable": True,
        "createable": True,
        "updateable": True,
        "deletable": True,
        "undeletable": ds.deleted_flag is not None,
        "replicateable": True,
        "layoutable": True,
        "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
    }
    if with_fields:
        doc.update(
            childRelationships=[], recordTypeInfos=[], fields=[_describe_field(ds, f) for f in ds.fields]
        )
    return doc
