"""curated/opportunities and curated/order_links: live opportunities enriched, ERP orders linked.

    spark-submit spark_jobs/opportunity_enrichment.py --lake <uri-or-path> --ds YYYY-MM-DD \\
        [--reporting-currency USD]

Reads every committed raw ds ``<= --ds`` of Salesforce Opportunity, Account, User and
DatedConversionRate and ERP sales_orders (latest version per key, tombstones removed), and
the committed curated/conformed_customers of ``--ds`` (run ``conformed_customers`` first).

- ``curated/opportunities``: one row per live opportunity, with its account and owner (left
  joins: a missing account or owner leaves NULLs, the opportunity stays), the amount converted
  to the reporting currency at the rate in force on CloseDate, the account's conformed ERP
  customer (the lowest customer_id when several) and the number of live orders linked to it.
- ``curated/order_links``: one row per live ERP order, with the customer's account (via
  conformed_customers), the opportunity its hand-typed ``sf_opportunity_ref`` names (resolved
  like account references) and its total in the reporting currency at the order date's rate.

A missing rate leaves ``fx_rate`` and ``amount_reporting`` NULL and is counted (``fx_missing``).
"""

from __future__ import annotations

import sys
import time

import curated_lib as lib
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

JOB = "opportunity_enrichment"
OPPORTUNITIES = "opportunities"
ORDER_LINKS = "order_links"
LINKS = ("opportunity_ref", "unlinked")
UNLINKED_REASONS = ("missing_ref", "unknown_opportunity")
REF_RESOLUTIONS = ("exact", "case_fixed", "expanded_15")


def build_opportunities(opps: DataFrame, accounts: DataFrame, users: DataFrame) -> DataFrame:
    """Opportunities joined to their account and owner (left joins: nothing is dropped)."""
    o, a, u = opps.alias("o"), accounts.alias("a"), users.alias("u")
    return (
        o.join(a, F.col("o.AccountId") == F.col("a.Id"), "left")
        .join(u, F.col("o.OwnerId") == F.col("u.Id"), "left")
        .select(
            F.col("o.Id").alias("opportunity_id"),
            F.col("o.Name").alias("opportunity_name"),
            F.col("o.AccountId").alias("account_id"),
            F.col("a.Name").alias("account_name"),
            F.col("a.BillingCountry").alias("billing_country"),
            F.col("a.Industry").alias("industry"),
            F.col("o.OwnerId").alias("owner_id"),
            F.col("u.Name").alias("owner_name"),
            F.col("u.Region__c").alias("region"),
            F.col("o.StageName").alias("stage_name"),
            F.col("o.Probability").cast("double").alias("probability"),
            F.col("o.CloseDate").alias("close_date"),
            F.col("o.IsClosed").alias("is_closed"),
            F.col("o.IsWon").alias("is_won"),
            F.col("o.CurrencyIsoCode").alias("currency_iso_code"),
            F.col("o.Amount").cast(lib.MONEY).alias("amount"),
            F.col("o.CreatedDate").alias("created_date"),
            F.col("o.SystemModstamp").alias("system_modstamp"),
        )
    )


def build_order_links(orders: DataFrame, customers: DataFrame, opportunity_ids: DataFrame, rates: DataFrame,
                      reporting: str) -> DataFrame:
    """One row per live order: its account (via the conformed customer) and linked opportunity."""
    account_of = customers.select("customer_id", F.col("account_id").alias("_account_id"))
    linked = lib.resolve_reference(orders, "sf_opportunity_ref", opportunity_ids, "_opportunity_id", "_ref_how")
    linked = linked.join(F.broadcast(account_of), "customer_id", "left")
    linked = lib.with_fx(linked, "total_amount", "currency", "order_date", rates, reporting)
    return linked.select(
        F.col("order_id").cast("long").alias("order_id"),
        F.col("customer_id").cast("long").alias("customer_id"),
        F.col("_account_id").alias("account_id"),
        F.col("_opportunity_id").alias("opportunity_id"),
        F.when(F.col("_opportunity_id").isNotNull(), "opportunity_ref").otherwise("unlinked").alias("link"),
        F.col("order_date"),
        F.col("status"),
        F.col("currency"),
        F.col("total_amount").cast(lib.MONEY).alias("total_amount"),
        F.col("fx_rate"),
        F.col("amount_reporting"),
        # not published: why an order is unlinked, for the manifest's counts
        F.when(F.col("_ref_how") == "unknown", "unknown_opportunity").otherwise(F.col("_ref_how")).alias("_ref_how"),
    )


def order_counts(orders: DataFrame) -> DataFrame:
    """Live orders per reference key (``lib.with_reference_key`` of ``sf_opportunity_ref``):
    ``_rk``, ``_orders``. An opportunity's linked orders are the counts under its two keys
    (``lib.id_keys``), exactly the orders ``build_order_links`` links to it."""
    keyed = lib.with_reference_key(orders, "sf_opportunity_ref")
    return keyed.filter(F.col("_rk").isNotNull()).groupBy("_rk").agg(F.count(F.lit(1)).alias("_orders"))


def enrich(opportunities: DataFrame, customers: DataFrame, orders_by_key: DataFrame, rates: DataFrame,
           reporting: str) -> DataFrame:
    """FX on CloseDate, the account's conformed customer (lowest id) and the linked order count
    (``orders_by_key``: ``order_counts``)."""
    customer_of = (
        customers.filter(F.col("is_resolved"))
        .groupBy("account_id")
        .agg(F.min("customer_id").alias("customer_id"))
    )
    # The same counts probed twice, once per key (Spark computes them once and reuses them).
    key18, key15 = lib.id_keys(F.col("opportunity_id"))
    by18, by15 = orders_by_key.alias("by18"), orders_by_key.alias("by15")
    converted = lib.with_fx(opportunities, "amount", "currency_iso_code", "close_date", rates, reporting)
    joined = (
        converted.join(F.broadcast(customer_of), "account_id", "left")
        .join(by18, key18 == F.col("by18._rk"), "left")
        .join(by15, key15 == F.col("by15._rk"), "left")
    )
    zero = F.lit(0).cast("long")
    order_count = F.coalesce(F.col("by18._orders"), zero) + F.coalesce(F.col("by15._orders"), zero)
    return joined.select(
        "opportunity_id", "opportunity_name", "account_id", "account_name", "billing_country", "industry",
        "owner_id", "owner_name", "region", "stage_name", "probability", "close_date", "is_closed", "is_won",
        "currency_iso_code", "amount", "fx_rate",
        F.lit(reporting).alias("reporting_currency"),
        "amount_reporting",
        F.col("customer_id").cast("long").alias("customer_id"),
        order_count.cast("int").alias("order_count"),
        "created_date", "system_modstamp",
    )


def run(spark: SparkSession, lake_uri: str, ds: str, *, reporting_currency: str | None = None,
        s3=None, rows_per_file: int = lib.ROWS_PER_FILE) -> dict:
    """Build and commit curated/opportunities and curated/order_links for ``ds``; return the summary."""
    started = time.monotonic()
    reporting = lib.reporting_currency(reporting_currency)
    lake = lib.open_lake(spark, lake_uri, ds, s3)
    inputs: dict[str, list[str]] = {}
    opps = lib.live(spark, lake, "salesforce.Opportunity", ds, inputs)
    accounts = lib.live(spark, lake, "salesforce.Account", ds, inputs)
    users = lib.live(spark, lake, "salesforce.User", ds, inputs)
    rates = lib.rate_table(lib.live(spark, lake, "salesforce.DatedConversionRate", ds, inputs))
    orders = lib.live(spark, lake, "erp.sales_orders", ds, inputs)
    customers = lib.read_curated(spark, lake, "conformed_customers", ds, inputs)

    # opportunities first, with their order counts from the orders' reference keys; then
    # order_links resolves the orders against the opportunities that have orders, read back
    # from the files just written. The latest-version window over the raw opportunities thus
    # runs once. Nothing is cached: each output is computed once, measured while it is written.
    # Both are staged before either is committed: a failure leaves both previous versions
    # committed and whole.
    enriched = enrich(build_opportunities(opps, accounts, users), customers, order_counts(orders), rates, reporting)
    opp_staged = lib.stage_curated(
        lake, enriched, OPPORTUNITIES, ds, inputs, {"reporting_currency": reporting}, rows_per_file,
        counts={"": {"fx_missing": lib.count_if(F.col("fx_rate").isNull()),
                     "with_customer": lib.count_if(F.col("customer_id").isNotNull()),
                     "with_orders": lib.count_if(F.col("order_count") > 0)},
                "unrankable": lib.unrankable_counts()},
    )
    # An order names a live opportunity exactly when that opportunity counted it, so
    # resolving against those with orders gives what resolving against all of them would.
    try:
        with_orders = (spark.read.parquet(*opp_staged.urls())
                       .filter(F.col("order_count") > 0).select(F.col("opportunity_id").alias("id")))
        links = build_order_links(orders, customers, with_orders, rates, reporting)
        published = [c for c in links.columns if c != "_ref_how"]
        links_staged = lib.stage_curated(
            lake, links, ORDER_LINKS, ds, inputs, {"reporting_currency": reporting}, rows_per_file,
            counts={"link_counts": lib.counts_of("link", LINKS),
                    "unlinked_reasons": lib.counts_of("_ref_how", UNLINKED_REASONS),
                    "ref_resolutions": lib.counts_of("_ref_how", REF_RESOLUTIONS),
                    "": {"fx_missing": lib.count_if(F.col("fx_rate").isNull())}},
            publish=published,
        )
    except BaseException:
        opp_staged.writer.abort()  # its files, never committed
        raise
    opp_manifest, links_manifest = opp_staged.commit(), links_staged.commit()
    link_counts = links_manifest["link_counts"]
    fx_missing, order_fx_missing = opp_manifest["fx_missing"], links_manifest["fx_missing"]
    return lib.summary(JOB, ds, lake, {OPPORTUNITIES: opp_manifest, ORDER_LINKS: links_manifest}, started,
                       fx_missing={OPPORTUNITIES: fx_missing, ORDER_LINKS: order_fx_missing},
                       link_counts=link_counts, reporting_currency=reporting)


if __name__ == "__main__":
    sys.exit(lib.job_main(JOB, run, __doc__.split("\n\n")[0]))
