"""The marts' ground truth, computed from the generator's data alone (never from Tally's code):
what ``mart_rep_performance`` and ``mart_revenue_by_country`` must hold for a world's state."""

from __future__ import annotations

from decimal import Decimal

from tally_local import generator


def quarter(day) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def ranks(values: list[Decimal | None], mine: Decimal | None) -> tuple[float, int]:
    """PostgreSQL's PERCENT_RANK (ascending, nulls last) and DENSE_RANK (descending, nulls first)."""
    big = Decimal("1e30")  # a null sorts as the greatest value both ways
    v = big if mine is None else mine
    others = [big if w is None else w for w in values]
    prank = sum(1 for w in others if w < v) / (len(others) - 1) if len(others) > 1 else 0.0
    return prank, 1 + len({w for w in others if w > v})


def expected_rep_performance(data: generator.SyntheticData) -> dict[str, dict]:
    """What mart_rep_performance must hold, per ranking_id (owner:quarter), from the ground truth
    alone: amounts in USD by the FX rule, zero amounts excluded, open pipeline = probability 10-89."""
    users = {u["Id"]: u for u in data.salesforce["User"]}
    rates = data.salesforce["DatedConversionRate"]
    agg: dict[str, dict] = {}
    for o in data.salesforce["Opportunity"]:
        if o["IsDeleted"]:
            continue
        key = f"{o['OwnerId']}:{quarter(o['CloseDate'])}"
        a = agg.setdefault(key, {"owner": o["OwnerId"], "quarter": quarter(o["CloseDate"]), "won": None,
                                 "won_n": 0, "closed_n": 0, "open": None, "n": 0})
        usd = generator.to_reporting(o["Amount"], o["CurrencyIsoCode"], o["CloseDate"], rates)
        a["n"] += 1
        a["won_n"] += o["IsWon"]
        a["closed_n"] += o["IsClosed"]
        if o["IsWon"] and o["Amount"] != 0 and usd is not None:
            a["won"] = (a["won"] or 0) + usd
        if not o["IsClosed"] and 10 <= o["Probability"] <= 89 and o["Amount"] != 0 and usd is not None:
            a["open"] = (a["open"] or 0) + usd
    out = {}
    for key, a in agg.items():
        region = users[a["owner"]]["Region__c"]
        peers = [p["won"] for p in agg.values() if p["quarter"] == a["quarter"]
                 and users[p["owner"]]["Region__c"] == region]
        prank, drank = ranks(peers, a["won"])
        out[key] = {
            "owner_id": a["owner"], "region": region, "quarter": a["quarter"], "won_amount": a["won"],
            "won_count": a["won_n"], "closed_count": a["closed_n"], "open_pipeline": a["open"],
            "opportunity_count": a["n"],
            "win_rate": (Decimal(a["won_n"]) / a["closed_n"]) if a["closed_n"] else None,
            "percent_rank": prank, "dense_rank": drank,
        }
    return out


def expected_revenue_totals(data: generator.SyntheticData) -> dict[str, object]:
    """Totals of mart_revenue_by_country over every country and month, from the ground truth: ERP
    documents converted by the FX rule at their own dates (payments as landed: quarantined ones
    are not there)."""
    rates = data.salesforce["DatedConversionRate"]
    orders = [o for o in data.erp["sales_orders"] if o["status"] != "cancelled"]
    invoices = [i for i in data.erp["invoices"] if i["status"] != "void"]
    payments = data.erp["payments"]

    def total(rows, amount, currency, day) -> Decimal:
        converted = [generator.to_reporting(Decimal(str(r[amount]).strip()), r[currency], r[day], rates) for r in rows]
        return sum((c for c in converted if c is not None), Decimal(0))

    return {"bookings_count": len(orders), "billings_count": len(invoices), "collections_count": len(payments),
            "billings_amount": total(invoices, "amount", "currency", "invoice_date"),
            "collections_amount": total(payments, "amount", "currency", "payment_date")}
