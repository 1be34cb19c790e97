"""Deterministic synthetic sales data: the ground truth of the embedded stack and the tests.

``generate(Scale(...), seed, as_of)`` returns every record of every source as plain dicts.
The same seed, scale and ``as_of`` give the same data, byte for byte. All timestamps fall
in ``[as_of - days, as_of)``, so a run for the ds ending at ``as_of`` sees everything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tally import sfid

REGIONS = {
    "AMER": ["United States", "Canada", "Brazil", "Mexico"],
    "EMEA": ["Germany", "France", "United Kingdom", "Spain", "Netherlands"],
    "APAC": ["Japan", "Australia", "Singapore", "India"],
}
INDUSTRIES = ["Technology", "Finance", "Retail", "Manufacturing", "Healthcare", "Energy"]
OPEN_STAGES = {
    "Prospecting": 10.0,
    "Qualification": 20.0,
    "Needs Analysis": 40.0,
    "Value Proposition": 50.0,
    "Proposal/Price Quote": 75.0,
    "Negotiation/Review": 90.0,
}
ORDER_STATUSES = ["open", "shipped", "invoiced", "cancelled"]
FIRST = ["Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Edsger", "Frances", "Donald", "Radia",
         "Tim", "Margaret", "John", "Sophie", "Guido", "Anita", "Bjarne", "Katherine", "Dennis", "Hedy"]
LAST = ["Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Dijkstra", "Allen", "Knuth",
        "Perlman", "Berners-Lee", "Hamilton", "Backus", "Wilson", "van Rossum", "Borg", "Stroustrup",
        "Johnson", "Ritchie", "Lamarr"]


@dataclass(frozen=True)
class Scale:
    accounts: int = 200
    opportunities: int = 1000
    users: int = 12
    days: int = 30
    orders_per_customer: int = 3
    products: int = 40


@dataclass(frozen=True)
class BadRow:
    """An ERP row Tally must quarantine rather than land: the row as the ERP holds it, and why."""

    row: dict
    reason: str


@dataclass
class SyntheticData:
    seed: int
    scale: Scale
    as_of: datetime
    salesforce: dict[str, list[dict]] = field(default_factory=dict)
    # ERP rows that land in the raw zone, as the ERP holds them (``payments.amount`` is text there)
    erp: dict[str, list[dict]] = field(default_factory=dict)
    # ERP rows that are in the ERP too but cannot be typed: they go to the quarantine zone
    erp_bad: dict[str, list[BadRow]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {**{f"salesforce.{k}": len(v) for k, v in self.salesforce.items()},
                **{f"erp.{k}": len(v) for k, v in self.erp.items()}}

    def erp_rows(self, table: str) -> list[dict]:
        """Every row of an ERP table, landable or not (what the ERP database holds)."""
        return [*self.erp.get(table, []), *(b.row for b in self.erp_bad.get(table, []))]


def default_as_of() -> datetime:
    """Midnight UTC today: the end of yesterday's data interval."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def generate(scale: Scale = Scale(), seed: int = 7, as_of: datetime | None = None) -> SyntheticData:
    as_of = (as_of or default_as_of()).astimezone(UTC)
    rng = random.Random(seed)
    start = as_of - timedelta(days=scale.days)
    span = int((as_of - start).total_seconds())

    def moment(after: datetime | None = None) -> datetime:
        lo = int(((after or start) - start).total_seconds())
        return start + timedelta(seconds=rng.randrange(lo, span))

    data = SyntheticData(seed=seed, scale=scale, as_of=as_of)
    region_names = sorted(REGIONS)

    users = []
    for n in range(scale.users):
        created = moment()
        users.append({
            "Id": sfid.make("005", 1000 + n),
            "Name": f"{FIRST[n % len(FIRST)]} {LAST[(n * 7) % len(LAST)]}",
            "Email": f"rep{n}@example.com",
            "IsActive": rng.random() > 0.1,
            "Region__c": region_names[n % len(region_names)],
            "CreatedDate": created,
            "SystemModstamp": moment(created),
        })
    data.salesforce["User"] = users

    accounts = []
    for n in range(scale.accounts):
        owner = rng.choice(users)
        country = rng.choice(REGIONS[owner["Region__c"]])
        created = moment()
        accounts.append({
            "Id": sfid.make("001", 5000 + n),
            "Name": f"Account {n:05d} {rng.choice(INDUSTRIES)}",
            "BillingCountry": country,
            "Industry": rng.choice(INDUSTRIES),
            "OwnerId": owner["Id"],
            "IsDeleted": False,
            "CreatedDate": created,
            "SystemModstamp": moment(created),
        })
    data.salesforce["Account"] = accounts

    opportunities = []
    fx_rng = random.Random(seed + 2)  # its own stream: the other fields stay as they were
    for n in range(scale.opportunities):
        account = rng.choice(accounts)
        owner = rng.choice(users) if rng.random() < 0.2 else next(u for u in users if u["Id"] == account["OwnerId"])
        roll = rng.random()
        if roll < 0.3:
            stage, prob = "Closed Won", 100.0
        elif roll < 0.5:
            stage, prob = "Closed Lost", 0.0
        else:
            stage, prob = rng.choice(sorted(OPEN_STAGES.items()))
        closed = stage.startswith("Closed")
        amount = Decimal(0) if rng.random() < 0.03 else Decimal(rng.randrange(1_000_00, 250_000_00)) / 100
        created = moment()
        opportunities.append({
            "Id": sfid.make("006", 90000 + n),
            "Name": f"{account['Name']} - deal {n}",
            "AccountId": account["Id"],
            "OwnerId": owner["Id"],
            "StageName": stage,
            "Amount": amount,
            "Probability": prob,
            "CloseDate": (created + timedelta(days=rng.randrange(0, 120))).date(),
            "IsClosed": closed,
            "IsWon": stage == "Closed Won",
            "CurrencyIsoCode": _opportunity_currency(fx_rng),
            "IsDeleted": rng.random() < 0.02,
            "CreatedDate": created,
            "SystemModstamp": moment(created),
        })
    data.salesforce["Opportunity"] = opportunities
    data.salesforce["Contact"] = _contacts(rng, accounts, moment)
    data.salesforce["OpportunityHistory"] = _opportunity_history(rng, opportunities, moment)
    data.salesforce["DatedConversionRate"] = _conversion_rates(rng, start, as_of)
    data.salesforce["Task"] = _tasks(rng, opportunities, data.salesforce["Contact"], moment)

    customers, orders = [], []
    for n, account in enumerate(accounts):
        created = moment()
        ref = messy_reference(rng, account["Id"])
        customers.append({
            "customer_id": 10_000 + n,
            "name": account["Name"].upper(),
            "country": account["BillingCountry"],
            "sf_account_ref": ref,
            "created_at": created,
            "updated_at": moment(created),
        })
    order_no = 500_000
    for customer in customers:
        for _ in range(rng.randrange(0, scale.orders_per_customer * 2 + 1)):
            created = moment(customer["created_at"])
            orders.append({
                "order_id": order_no,
                "customer_id": customer["customer_id"],
                "order_date": created.date(),
                "status": rng.choice(ORDER_STATUSES),
                "currency": rng.choice(["USD", "USD", "EUR", "GBP"]),
                "total_amount": Decimal(rng.randrange(50_00, 90_000_00)) / 100,
                "created_at": created,
                "updated_at": moment(created),
            })
            order_no += 1
    _link_orders(random.Random(seed + 3), accounts, opportunities, orders)
    data.erp["customers"] = customers
    data.erp["sales_orders"] = orders
    _erp_documents(data, random.Random(seed + 1), start, as_of)
    return data


OPPORTUNITY_CURRENCIES = [("USD", 70), ("EUR", 12), ("GBP", 8), ("JPY", 6), ("AUD", 4)]


def _opportunity_currency(rng: random.Random) -> str:
    """Mostly USD (the corporate currency), some EUR/GBP/JPY/AUD."""
    codes, weights = zip(*OPPORTUNITY_CURRENCIES, strict=True)
    return rng.choices(codes, weights)[0]


def _link_orders(rng: random.Random, accounts: list[dict], opportunities: list[dict], orders: list[dict]) -> None:
    """``sf_opportunity_ref`` of each order: most orders of a customer whose account has won
    opportunities name one of them, typed by hand like ``sf_account_ref`` (18-char, 15-char,
    wrong case or missing); the rest carry none. Its own random stream (``seed + 3``), so every
    other value stays as it was. Customer ``10_000 + n`` is account ``n`` (see ``generate``)."""
    won: dict[str, list[str]] = {}
    for opp in opportunities:
        if opp["IsWon"]:
            won.setdefault(opp["AccountId"], []).append(opp["Id"])
    for order in orders:
        account = accounts[order["customer_id"] - 10_000]["Id"]
        choices = won.get(account)
        ref = messy_reference(rng, rng.choice(choices)) if choices and rng.random() < 0.8 else None
        order["sf_opportunity_ref"] = ref


TASK_STATUSES = ["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"]
CURRENCIES = {"EUR": 0.92, "GBP": 0.79, "JPY": 151.0, "AUD": 1.52}


def _contacts(rng: random.Random, accounts: list[dict], moment) -> list[dict]:
    out, n = [], 0
    for account in accounts:
        for _ in range(rng.randrange(1, 4)):
            created = moment(account["CreatedDate"])
            first, last = rng.choice(FIRST), rng.choice(LAST)
            out.append({
                "Id": sfid.make("003", 20000 + n), "AccountId": account["Id"], "OwnerId": account["OwnerId"],
                "FirstName": first, "LastName": last, "Email": f"{first}.{last}.{n}@example.org".lower(),
                "Title": rng.choice(["CFO", "CTO", "Buyer", "VP Sales", "Engineer", None]),
                "IsDeleted": rng.random() < 0.02, "CreatedDate": created, "SystemModstamp": moment(created),
            })
            n += 1
    return out


def _opportunity_history(rng: random.Random, opportunities: list[dict], moment) -> list[dict]:
    """Stage changes of each opportunity, ending in its current stage."""
    out, n = [], 0
    path = list(OPEN_STAGES)
    for opp in opportunities:
        current = opp["StageName"]
        steps = path[: path.index(current) + 1] if current in OPEN_STAGES else [*path[: rng.randrange(1, 5)], current]
        at = opp["CreatedDate"]
        for stage in steps:
            at = moment(at) if at < opp["SystemModstamp"] else at
            at = min(at, opp["SystemModstamp"])
            out.append({
                "Id": sfid.make("008", 300000 + n), "OpportunityId": opp["Id"], "StageName": stage,
                "Amount": opp["Amount"], "Probability": OPEN_STAGES.get(stage, 100.0 if stage == "Closed Won" else 0.0),
                "CloseDate": opp["CloseDate"], "IsDeleted": opp["IsDeleted"], "CreatedDate": at, "SystemModstamp": at,
            })
            n += 1
    return out


def _conversion_rates(rng: random.Random, start: datetime, as_of: datetime) -> list[dict]:
    """Effective-dated rates per currency: a new rate every 7 days, ranges back to back."""
    out, n = [], 0
    first_day = start.date() - timedelta(days=start.date().weekday())
    for code, base in sorted(CURRENCIES.items()):
        day = first_day
        while day < as_of.date():
            nxt = day + timedelta(days=7)
            stamp = max(start, datetime(day.year, day.month, day.day, tzinfo=UTC))
            out.append({
                "Id": sfid.make("04w", 7000 + n), "IsoCode": code,
                "ConversionRate": round(base * (1 + rng.uniform(-0.03, 0.03)), 6),
                "StartDate": day, "NextStartDate": nxt if nxt < as_of.date() else None,
                "CreatedDate": stamp, "SystemModstamp": stamp,
            })
            day, n = nxt, n + 1
    return out


def _tasks(rng: random.Random, opportunities: list[dict], contacts: list[dict], moment) -> list[dict]:
    by_account: dict[str, list[dict]] = {}
    for c in contacts:
        by_account.setdefault(c["AccountId"], []).append(c)
    out, n = [], 0
    for opp in opportunities:
        for _ in range(rng.randrange(0, 4)):
            created = moment(opp["CreatedDate"])
            who = rng.choice(by_account.get(opp["AccountId"], [None]))
            status = rng.choice(TASK_STATUSES)
            out.append({
                "Id": sfid.make("00T", 400000 + n), "WhatId": opp["Id"], "WhoId": who["Id"] if who else None,
                "OwnerId": opp["OwnerId"], "Subject": rng.choice(["Call", "Email", "Meeting", "Demo", "Follow-up"]),
                "Status": status, "TaskSubtype": rng.choice(["Call", "Email", "Task"]),
                "ActivityDate": (created + timedelta(days=rng.randrange(0, 14))).date(),
                "IsClosed": status == "Completed", "IsDeleted": rng.random() < 0.01,
                "CreatedDate": created, "SystemModstamp": moment(created),
            })
            n += 1
    return out


PRODUCT_CATEGORIES = ["Hardware", "Software", "Services", "Support", "Training"]
PAYMENT_METHODS = ["wire", "card", "check", "ach"]


def _erp_documents(data: SyntheticData, rng: random.Random, start: datetime, as_of: datetime) -> None:
    """Products, order lines, invoices and payments, from their own random stream (``seed + 1``)
    so that the Salesforce data and the ERP customers and orders stay exactly as they were.

    Order lines add up to their order's total (quantity × unit price − discount); invoices bill
    shipped and invoiced orders; payments settle invoices. Like any legacy ERP it has dirt:
    a few order lines lost their order (``order_id`` null), and ``payments.amount`` is a varchar
    typed by hand, a few of which do not parse (``1.234,50``, ``12O.00``, ``n/a``), while others
    carry stray blanks (which parse). Rows that cannot be landed go to ``data.erp_bad``.
    """
    span = int((as_of - start).total_seconds())

    def moment(after: datetime | None = None, within_days: int | None = None) -> datetime:
        """A time in ``[after, as_of)``; with ``within_days``, no later than that after ``after``."""
        lo = int(((after or start) - start).total_seconds())
        hi = span if within_days is None else min(span, lo + within_days * 86_400)
        return start + timedelta(seconds=rng.randrange(lo, max(hi, lo + 1)))

    cents = Decimal("0.01")
    products = []
    for n in range(data.scale.products):
        category = rng.choice(PRODUCT_CATEGORIES)
        created = moment()
        products.append({
            "product_id": 1_000 + n, "sku": f"SKU-{n:05d}", "name": f"{category} item {n}", "category": category,
            "list_price": Decimal(rng.randrange(5_00, 5_000_00)) / 100, "active": rng.random() > 0.1,
            "created_at": created, "updated_at": moment(created),
        })
    lines, invoices, payments = [], [], []
    for order in data.erp["sales_orders"]:
        total = int(order["total_amount"] * 100)
        k = min(rng.randint(1, 4), total)
        cuts = sorted(rng.sample(range(1, total), k - 1)) if k > 1 else []
        for i, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, total], strict=True)):
            product = rng.choice(products)
            quantity = rng.randint(1, 5)
            amount = Decimal(hi - lo) / 100
            unit = (amount / quantity).quantize(cents, rounding="ROUND_CEILING")
            lines.append({
                "line_id": 2_000_000 + len(lines), "order_id": order["order_id"], "line_no": i + 1,
                "product_id": product["product_id"], "quantity": quantity, "unit_price": unit,
                "discount_amount": unit * quantity - amount, "line_amount": amount,
                "created_at": order["created_at"], "updated_at": moment(order["created_at"], 2),
            })
        if order["status"] == "invoiced" or (order["status"] == "shipped" and rng.random() < 0.5):
            created = moment(order["created_at"], 5)
            roll = rng.random()
            status = "paid" if roll < 0.5 else "open" if roll < 0.9 else "void"
            invoice = {
                "invoice_id": 3_000_000 + len(invoices), "order_id": order["order_id"],
                "invoice_number": f"INV-{len(invoices):07d}", "invoice_date": created.date(),
                "due_date": created.date() + timedelta(days=30), "currency": order["currency"],
                "amount": order["total_amount"], "status": status, "created_at": created,
                "updated_at": moment(created, 3),
            }
            invoices.append(invoice)
            if status == "paid" or (status == "open" and rng.random() < 0.3):
                owed = invoice["amount"] if status == "paid" else (invoice["amount"] / 2).quantize(cents)
                parts = [owed] if owed < 2 or rng.random() < 0.7 else [(owed / 2).quantize(cents)]
                if sum(parts) != owed:
                    parts.append(owed - parts[0])
                for part in parts:
                    paid = moment(created, 10)
                    text = f"{part:.2f}" if rng.random() > 0.05 else f" {part:.2f} "
                    payments.append({
                        "payment_id": 4_000_000 + len(payments), "invoice_id": invoice["invoice_id"],
                        "payment_date": paid.date(), "method": rng.choice(PAYMENT_METHODS), "amount": text,
                        "currency": invoice["currency"], "created_at": paid, "updated_at": moment(paid, 1),
                    })
    bad: dict[str, list[BadRow]] = {"order_lines": [], "payments": []}
    for i in sorted(rng.sample(range(len(lines)), min(len(lines), max(1, len(lines) // 250))), reverse=True):
        row = {**lines.pop(i), "order_id": None}
        bad["order_lines"].append(BadRow(row, "null order_id"))
    for i in sorted(rng.sample(range(len(payments)), min(len(payments), max(1, len(payments) // 100))),
                    reverse=True):
        value = Decimal(payments[i]["amount"].strip())
        typo = rng.choice([
            f"{value:,.2f}".replace(",", " ").replace(".", ",").replace(" ", "."),  # 1.234,50
            f"{value:.2f}".replace("0", "O", 1) if "0" in f"{value:.2f}" else f"O{value:.2f}",  # 12O.00
            "n/a",
        ])
        bad["payments"].append(BadRow({**payments.pop(i), "amount": typo}, "amount: not a decimal"))
    for rows in bad.values():
        rows.reverse()
    data.erp["products"] = products
    data.erp["order_lines"] = lines
    data.erp["invoices"] = invoices
    data.erp["payments"] = payments
    data.erp_bad = bad


def messy_reference(rng: random.Random, account_id: str) -> str | None:
    """ERP users type account references by hand: 18-char, 15-char, wrong case, or nothing."""
    roll = rng.random()
    if roll < 0.70:
        return account_id
    if roll < 0.85:
        return account_id[:15]
    if roll < 0.92:
        return account_id.lower()
    return None


def rate_on(rates: list[dict], currency: str | None, day: date | None) -> int | None:
    """The DatedConversionRate in force on ``day`` for ``currency``, in millionths of a unit per
    USD (``StartDate <= day < NextStartDate``, NULL next = open); USD is 1_000_000; None if missing.
    ``rates`` are live DatedConversionRate records. The ground truth of docs/curated.md's FX rule."""
    if currency is None or day is None:
        return None
    if currency == "USD":
        return 1_000_000
    hits = [r for r in rates if r["IsoCode"] == currency and r["StartDate"] <= day
            and (r["NextStartDate"] is None or day < r["NextStartDate"])]
    if not hits:
        return None
    return round(max(hits, key=lambda r: r["StartDate"])["ConversionRate"] * 1_000_000)


def to_reporting(amount: Decimal | None, currency: str | None, day: date | None, rates: list[dict],
                 reporting: str = "USD") -> Decimal | None:
    """``amount`` in ``reporting`` currency: round_half_up(amount / rate(src) * rate(rep), 9);
    the same currency converts at exactly 1; None when a rate is missing (or no amount)."""
    from decimal import ROUND_HALF_UP, localcontext

    if amount is None:
        return None
    if currency == reporting:
        return amount
    src, rep = rate_on(rates, currency, day), rate_on(rates, reporting, day)
    if src is None or rep is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        return (Decimal(amount) * rep / src).quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)
