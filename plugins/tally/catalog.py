"""The datasets Tally lands: source objects, their fields, keys and warehouse names.

This is the single contract shared by the simulator, the generator, the extractors, the
Spark jobs, the loader and the dbt sources. Field types are logical types:
``id`` (Salesforce id, text), ``string``, ``bool``, ``int``, ``decimal`` (money, exact),
``double``, ``date``, ``datetime`` (UTC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tally import contract


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    nullable: bool = True


@dataclass(frozen=True)
class Dataset:
    source: str  # "salesforce" | "erp"
    name: str  # object / table name as the source spells it
    fields: tuple[Field, ...]
    key: str
    cursor: str  # the incremental cursor column
    deleted_flag: str | None = None
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def lake_path(self) -> str:
        return f"raw/{self.source}/{self.name}"

    @property
    def dataset_id(self) -> str:
        """Name used in the ledger and in logs: ``salesforce.Opportunity``."""
        return f"{self.source}.{self.name}"

    @property
    def warehouse_table(self) -> str:
        prefix = "sf" if self.source == "salesforce" else self.source
        return f"{prefix}_{snake_case(self.name)}"


def snake_case(name: str) -> str:
    """``SystemModstamp`` -> ``system_modstamp``; ``Region__c`` -> ``region__c``."""
    head, sep, tail = name.partition("__")
    head = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", head)
    head = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", head)
    return (head + sep + tail).lower()


F = Field

SALESFORCE: dict[str, Dataset] = {
    "User": Dataset(
        source="salesforce",
        name="User",
        key="Id",
        cursor="SystemModstamp",
        fields=(
            F("Id", "id", False),
            F("Name", "string"),
            F("Email", "string"),
            F("IsActive", "bool"),
            F("Region__c", "string"),
            F("CreatedDate", "datetime"),
            F("SystemModstamp", "datetime", False),
        ),
    ),
    "Account": Dataset(
        source="salesforce",
        name="Account",
        key="Id",
        cursor="SystemModstamp",
        deleted_flag="IsDeleted",
        fields=(
            F("Id", "id", False),
            F("Name", "string"),
            F("BillingCountry", "string"),
            F("Industry", "string"),
            F("OwnerId", "id"),
            F("IsDeleted", "bool"),
            F("CreatedDate", "datetime"),
            F("SystemModstamp", "datetime", False),
        ),
    ),
    "Opportunity": Dataset(
        source="salesforce",
        name="Opportunity",
        key="Id",
        cursor="SystemModstamp",
        deleted_flag="IsDeleted",
        fields=(
            F("Id", "id", False),
            F("Name", "string"),
            F("AccountId", "id"),
            F("OwnerId", "id"),
            F("StageName", "string"),
            F("Amount", "decimal"),
            F("Probability", "double"),
            F("CloseDate", "date"),
            F("IsClosed", "bool"),
            F("IsWon", "bool"),
            F("CurrencyIsoCode", "string"),
            F("IsDeleted", "bool"),
            F("CreatedDate", "datetime"),
            F("SystemModstamp", "datetime", False),
        ),
    ),
    "Contact": Dataset(
        source="salesforce",
        name="Contact",
        key="Id",
        cursor="SystemModstamp",
        deleted_flag="IsDeleted",
        fields=(
            F("Id", "id", False),
            F("AccountId", "id"),
            F("OwnerId", "id"),
            F("FirstName", "string"),
            F("LastName", "string"),
            F("Email", "string"),
            F("Title", "string"),
            F("IsDeleted", "bool"),
            F("CreatedDate", "datetime"),
            F("SystemModstamp", "datetime", False),
        ),
    ),
    "OpportunityHistory": Dataset(
        source="salesforce",
        name="OpportunityHistory",
        key="Id",
        cursor="SystemModstamp",
        deleted_flag="IsDeleted",
        fields=(
            F("Id", "id", False),
            F("OpportunityId", "id", False),
            F("StageName", "string"),
            F("Amount", "decimal"),
            F("Probability", "double"),
            F("CloseDate", "date"),
            F("IsDeleted", "bool"),
            F("CreatedDate", "datetime"),
            F("SystemModstamp", "datetime", False),
        ),
    ),
    "DatedConversionRate": Dataset(
        source="salesforce",
        name="DatedConversionRate",
        key="Id",
        cursor="SystemModstamp",
        fields=(
            F("Id", "id", False),
            F("IsoCode", "string", False),
            F("ConversionRate", "double", False),
            F("StartDate", "date", False),
            F("NextStartDate", "date"),
            F("CreatedDate", "datetime"),
            F("SystemModstamp", "datetime", False),
        ),
    ),
    "Task": Dataset(
        source="salesforce",
        name="Task",
        key="Id",
        cursor="SystemModstamp",
        deleted_flag="IsDeleted",
        fields=(
            F("Id", "id", False),
            F("WhatId", "id"),
            F("WhoId", "id"),
            F("OwnerId", "id"),
            F("Subject", "string"),
            F("Status", "string"),
            F("TaskSubtype", "string"),
            F("ActivityDate", "date"),
            F("IsClosed", "bool"),
            F("IsDeleted", "bool"),
            F("CreatedDate", "datetime"),
            F("SystemModstamp", "datetime", False),
        ),
    ),
}

# ERP tables. ``_deleted`` is not an ERP column: the extractor adds it to every raw ERP row
# (false for rows read from the table, true for tombstones of keys deleted at the source), so
# ``deleted_flag`` names it as Salesforce's ``IsDeleted`` is named. Non-nullable fields are
# required: a source row with a null there, or a value that does not parse as the field's type,
# is quarantined instead of landed (see ``tally.sources.erp``). ``extra["full_reload"]``: land
# the whole table every ds (small dimensions) instead of the rows changed in the interval.
ERP_DELETED = "_deleted"

ERP: dict[str, Dataset] = {
    "customers": Dataset(
        source="erp",
        name="customers",
        key="customer_id",
        cursor="updated_at",
        deleted_flag=ERP_DELETED,
        fields=(
            F("customer_id", "int", False),
            F("name", "string"),
            F("country", "string"),
            F("sf_account_ref", "string"),
            F("created_at", "datetime"),
            F("updated_at", "datetime", False),
        ),
    ),
    "sales_orders": Dataset(
        source="erp",
        name="sales_orders",
        key="order_id",
        cursor="updated_at",
        deleted_flag=ERP_DELETED,
        fields=(
            F("order_id", "int", False),
            F("customer_id", "int", False),
            F("order_date", "date"),
            F("status", "string"),
            F("currency", "string"),
            F("total_amount", "decimal"),
            F("created_at", "datetime"),
            F("updated_at", "datetime", False),
            # the Salesforce Opportunity the order fulfils, typed by hand (15/18 chars, any case, often missing)
            F("sf_opportunity_ref", "string"),
        ),
    ),
    "products": Dataset(
        source="erp",
        name="products",
        key="product_id",
        cursor="updated_at",
        deleted_flag=ERP_DELETED,
        extra={"full_reload": True},
        fields=(
            F("product_id", "int", False),
            F("sku", "string", False),
            F("name", "string"),
            F("category", "string"),
            F("list_price", "decimal"),
            F("active", "bool"),
            F("created_at", "datetime"),
            F("updated_at", "datetime", False),
        ),
    ),
    "order_lines": Dataset(
        source="erp",
        name="order_lines",
        key="line_id",
        cursor="updated_at",
        deleted_flag=ERP_DELETED,
        fields=(
            F("line_id", "int", False),
            F("order_id", "int", False),
            F("line_no", "int"),
            F("product_id", "int"),
            F("quantity", "int"),
            F("unit_price", "decimal"),
            F("discount_amount", "decimal"),
            F("line_amount", "decimal"),
            F("created_at", "datetime"),
            F("updated_at", "datetime", False),
        ),
    ),
    "invoices": Dataset(
        source="erp",
        name="invoices",
        key="invoice_id",
        cursor="updated_at",
        deleted_flag=ERP_DELETED,
        fields=(
            F("invoice_id", "int", False),
            F("order_id", "int", False),
            F("invoice_number", "string"),
            F("invoice_date", "date"),
            F("due_date", "date"),
            F("currency", "string"),
            F("amount", "decimal"),
            F("status", "string"),
            F("created_at", "datetime"),
            F("updated_at", "datetime", False),
        ),
    ),
    "payments": Dataset(
        source="erp",
        name="payments",
        key="payment_id",
        cursor="updated_at",
        deleted_flag=ERP_DELETED,
        fields=(
            F("payment_id", "int", False),
            F("invoice_id", "int", False),
            F("payment_date", "date"),
            F("method", "string"),
            # a varchar in the ERP (typed in by hand): parsed to an exact decimal on landing
            F("amount", "decimal", False),
            F("currency", "string"),
            F("created_at", "datetime"),
            F("updated_at", "datetime", False),
        ),
    ),
}

# Curated datasets written by Spark: names and key columns (snake_case, as in the warehouse) are
# the contract's. See docs/curated.md for the columns of each.
CURATED_KEYS = contract.CURATED_KEYS


def all_raw() -> list[Dataset]:
    return [*SALESFORCE.values(), *ERP.values()]


def get(dataset_id: str) -> Dataset:
    source, _, name = dataset_id.partition(".")
    table = SALESFORCE if source == "salesforce" else ERP if source == "erp" else {}
    if name not in table:
        raise KeyError(f"unknown dataset {dataset_id!r}; known: {[d.dataset_id for d in all_raw()]}")
    return table[name]
