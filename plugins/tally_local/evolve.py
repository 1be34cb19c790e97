"""A day of change in the synthetic sources: what the CRM and the ERP look like one day later.

``next_day(data, day)`` returns a copy of ``data`` with a day's worth of changes, every one
stamped inside ``[day 00:00, day+1 00:00)`` UTC, the way real sources change under a running
platform: opportunities move stage (with an OpportunityHistory row), change amount, are deleted
(``IsDeleted``, as ``queryAll`` shows them) or created; accounts are edited; ERP orders change
status and amount, are created, and a few are hard-deleted (the extractor finds those by key).

Seeding the sources with each day's data and landing that day before seeding the next is how the
tests build a lake whose every ds is what the daily run saw on the day, with the state of every
day kept as ground truth (``tests/e2e/test_backfill.py``, ``bench/daily_vs_history.py``).
Deterministic: the same data, day and seed give the same changes.
"""

from __future__ import annotations

import copy
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tally import sfid
from tally_local.generator import OPEN_STAGES, ORDER_STATUSES, SyntheticData, messy_reference

STAGES = [*OPEN_STAGES, "Closed Won", "Closed Lost"]


def next_day(data: SyntheticData, day: date, seed: int = 11, share: float = 0.05,
             created: float | None = None, deleted: float | None = None) -> SyntheticData:
    """``data`` one day later: about ``share`` of live opportunities and orders changed,
    ``deleted`` of them deleted (default a fifth of ``share``) and ``created`` new (default half
    of ``share``); all stamped within ``day``. Equal ``created`` and ``deleted`` keep the number
    of live records about level, so history grows while the day's change stays the same."""
    rng = random.Random(f"{seed}:{day.isoformat()}")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)

    def moment() -> datetime:
        return start + timedelta(seconds=rng.randrange(60, 86_340), microseconds=rng.randrange(0, 1000) * 1000)

    out = copy.deepcopy(data)
    out.as_of = max(data.as_of, start + timedelta(days=1))
    sf = out.salesforce
    created = share / 2 if created is None else created
    deleted = share / 5 if deleted is None else deleted
    _opportunities(sf, rng, moment, share, created, deleted)
    _accounts(sf, rng, moment, share)
    _orders(out, rng, moment, share, created, deleted)
    return out


def _number(record_id: str) -> int:
    """The number ``sfid.make`` encoded in an id (its 9 base-62 digits)."""
    return sum(sfid._BASE62.index(c) * 62 ** i for i, c in enumerate(reversed(record_id[6:15])))


def _count(rng: random.Random, population: int, share: float) -> int:
    return min(population, max(1, round(population * share * rng.uniform(0.6, 1.4))))


def _stage(rng: random.Random) -> tuple[str, float]:
    stage = rng.choice(STAGES)
    return stage, OPEN_STAGES.get(stage, 100.0 if stage == "Closed Won" else 0.0)


def _opportunities(sf: dict[str, list[dict]], rng: random.Random, moment, share: float, created: float,
                   deleted: float) -> None:
    opps, history = sf["Opportunity"], sf["OpportunityHistory"]
    live = [o for o in opps if not o["IsDeleted"]]
    next_history = 1 + max(_number(h["Id"]) for h in history)

    def staged(opp: dict, at: datetime) -> None:
        nonlocal next_history
        history.append({
            "Id": sfid.make("008", next_history), "OpportunityId": opp["Id"], "StageName": opp["StageName"],
            "Amount": opp["Amount"], "Probability": opp["Probability"], "CloseDate": opp["CloseDate"],
            "IsDeleted": False, "CreatedDate": at, "SystemModstamp": at,
        })
        next_history += 1

    for opp in rng.sample(live, _count(rng, len(live), share)):
        at = moment()
        stage, prob = _stage(rng)
        opp.update(StageName=stage, Probability=prob, IsClosed=stage.startswith("Closed"),
                   IsWon=stage == "Closed Won", SystemModstamp=at)
        if rng.random() < 0.5:
            opp["Amount"] = Decimal(rng.randrange(1_000_00, 250_000_00)) / 100
        staged(opp, at)
    for opp in rng.sample(live, _count(rng, len(live), deleted)):
        opp.update(IsDeleted=True, SystemModstamp=moment())
    accounts = [a for a in sf["Account"] if not a["IsDeleted"]]
    number = 1 + max(_number(o["Id"]) for o in opps)
    for _ in range(_count(rng, len(live), created)):
        at, account = moment(), rng.choice(accounts)
        stage, prob = _stage(rng)
        opp = {
            "Id": sfid.make("006", number), "Name": f"{account['Name']} - deal {number}",
            "AccountId": account["Id"], "OwnerId": account["OwnerId"], "StageName": stage,
            "Amount": Decimal(rng.randrange(1_000_00, 250_000_00)) / 100, "Probability": prob,
            "CloseDate": (at + timedelta(days=rng.randrange(0, 120))).date(),
            "IsClosed": stage.startswith("Closed"), "IsWon": stage == "Closed Won",
            "CurrencyIsoCode": rng.choice(["USD", "USD", "USD", "EUR", "GBP"]), "IsDeleted": False,
            "CreatedDate": at, "SystemModstamp": at,
        }
        opps.append(opp)
        staged(opp, at)
        number += 1


def _accounts(sf: dict[str, list[dict]], rng: random.Random, moment, share: float) -> None:
    live = [a for a in sf["Account"] if not a["IsDeleted"]]
    industries = sorted({a["Industry"] for a in live})
    for account in rng.sample(live, _count(rng, len(live), share / 2)):
        account.update(Industry=rng.choice(industries), SystemModstamp=moment())


def _orders(data: SyntheticData, rng: random.Random, moment, share: float, created: float, deleted: float) -> None:
    orders, customers = data.erp["sales_orders"], data.erp["customers"]
    for order in rng.sample(orders, _count(rng, len(orders), share)):
        order.update(status=rng.choice(ORDER_STATUSES), updated_at=moment())
        if rng.random() < 0.5:
            order["total_amount"] = Decimal(rng.randrange(50_00, 90_000_00)) / 100
    invoiced = {i["order_id"] for i in data.erp_rows("invoices")}
    deletable = [o for o in orders if o["order_id"] not in invoiced]
    gone = {o["order_id"] for o in rng.sample(deletable, min(len(deletable), _count(rng, len(orders), deleted)))}
    data.erp["sales_orders"] = orders = [o for o in orders if o["order_id"] not in gone]
    won = [o["Id"] for o in data.salesforce["Opportunity"] if o["IsWon"] and not o["IsDeleted"]]
    number = 1 + max(o["order_id"] for o in orders)
    for _ in range(_count(rng, len(orders), created)):
        at, customer = moment(), rng.choice(customers)
        orders.append({
            "order_id": number, "customer_id": customer["customer_id"], "order_date": at.date(),
            "status": rng.choice(ORDER_STATUSES), "currency": rng.choice(["USD", "USD", "EUR", "GBP"]),
            "total_amount": Decimal(rng.randrange(50_00, 90_000_00)) / 100, "created_at": at, "updated_at": at,
            "sf_opportunity_ref": messy_reference(rng, rng.choice(won)) if won and rng.random() < 0.7 else None,
        })
        number += 1


def land_day(res, salesforce_db, erp_conn, data: SyntheticData, ds: str) -> None:
    """Seed the sources with ``data`` (the world at the end of ``ds``) and land ``ds`` of every raw
    dataset into ``res.lake`` with the daily extract (the ledger's source and raw hops too), as the
    daily run would have on the day. Without Airflow: `tally backfill` then rebuilds the day."""
    from tally import contract
    from tally.core.dates import ds_interval
    from tally.stages import extract as extract_stage
    from tally_local.seed import seed_erp, seed_salesforce

    seed_salesforce(salesforce_db, data)
    seed_erp(erp_conn, data)
    start, end = ds_interval(ds)
    for dataset_id in contract.RAW_DATASETS:
        extract_stage.extract(res, dataset_id, ds, start, end)


def world_on(data: SyntheticData, days: list[str], seed: int = 11) -> SyntheticData:
    """``data`` after ``next_day`` of each of ``days`` in turn (deterministic: the same result each time)."""
    for ds in days:
        data = next_day(data, date.fromisoformat(ds), seed=seed)
    return data
