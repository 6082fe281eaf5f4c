"""The one cost table: FOCUS 1.2 columns, the FOCUS 1.3 additions (nullable), custom ``x_`` columns.

Money and quantities are ``DECIMAL(38,18)`` (exact, 20 integer digits), timestamps ``TIMESTAMPTZ`` (UTC),
tags a JSON object (FOCUS KeyValueFormat). This module is the single source of truth for the column list;
``collector/storage/migrations/0100_cost_line_items.sql`` is generated from it (see ``ddl()``) and a test checks
that the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass

MONEY = "DECIMAL(38,18)"
TABLE = "cost_line_items"


@dataclass(frozen=True)
class Col:
    name: str
    sqltype: str  # DuckDB type
    kind: str  # money | decimal | ts | str | json | int
    focus: str  # "1.2" | "1.3" | "x"
    required: bool = False  # FOCUS 1.2 Mandatory and not nullable


def _c(name: str, kind: str, focus: str = "1.2", required: bool = False) -> Col:
    sqltype = {"money": MONEY, "decimal": MONEY, "ts": "TIMESTAMPTZ", "str": "VARCHAR", "json": "JSON",
               "int": "BIGINT", "date": "DATE"}[kind]
    return Col(name, sqltype, kind, focus, required)


FOCUS_12: tuple[Col, ...] = (
    _c("AvailabilityZone", "str"),
    _c("BilledCost", "money", required=True),
    _c("BillingAccountId", "str", required=True),
    _c("BillingAccountName", "str"),
    _c("BillingAccountType", "str"),
    _c("BillingCurrency", "str", required=True),
    _c("BillingPeriodEnd", "ts", required=True),
    _c("BillingPeriodStart", "ts", required=True),
    _c("CapacityReservationId", "str"),
    _c("CapacityReservationStatus", "str"),
    _c("ChargeCategory", "str", required=True),
    _c("ChargeClass", "str"),
    _c("ChargeDescription", "str"),
    _c("ChargeFrequency", "str"),
    _c("ChargePeriodEnd", "ts", required=True),
    _c("ChargePeriodStart", "ts", required=True),
    _c("CommitmentDiscountCategory", "str"),
    _c("CommitmentDiscountId", "str"),
    _c("CommitmentDiscountName", "str"),
    _c("CommitmentDiscountQuantity", "decimal"),
    _c("CommitmentDiscountStatus", "str"),
    _c("CommitmentDiscountType", "str"),
    _c("CommitmentDiscountUnit", "str"),
    _c("ConsumedQuantity", "decimal"),
    _c("ConsumedUnit", "str"),
    _c("ContractedCost", "money", required=True),
    _c("ContractedUnitPrice", "decimal"),
    _c("EffectiveCost", "money", required=True),
    _c("InvoiceId", "str"),
    _c("InvoiceIssuerName", "str", required=True),
    _c("ListCost", "money", required=True),
    _c("ListUnitPrice", "decimal"),
    _c("PricingCategory", "str"),
    _c("PricingCurrency", "str"),
    _c("PricingCurrencyContractedUnitPrice", "decimal"),
    _c("PricingCurrencyEffectiveCost", "money"),
    _c("PricingCurrencyListUnitPrice", "decimal"),
    _c("PricingQuantity", "decimal"),
    _c("PricingUnit", "str"),
    _c("ProviderName", "str", required=True),
    _c("PublisherName", "str", required=True),
    _c("RegionId", "str"),
    _c("RegionName", "str"),
    _c("ResourceId", "str"),
    _c("ResourceName", "str"),
    _c("ResourceType", "str"),
    _c("ServiceCategory", "str", required=True),
    _c("ServiceName", "str", required=True),
    _c("ServiceSubcategory", "str"),
    _c("SkuId", "str"),
    _c("SkuMeter", "str"),
    _c("SkuPriceDetails", "json"),
    _c("SkuPriceId", "str"),
    _c("SubAccountId", "str"),
    _c("SubAccountName", "str"),
    _c("SubAccountType", "str"),
    _c("Tags", "json"),
)

FOCUS_13_ADDED: tuple[Col, ...] = (
    _c("AllocatedMethodId", "str", "1.3"),
    _c("AllocatedMethodDetails", "json", "1.3"),
    _c("AllocatedResourceId", "str", "1.3"),
    _c("AllocatedResourceName", "str", "1.3"),
    _c("AllocatedTags", "json", "1.3"),
    _c("ContractApplied", "json", "1.3"),
    _c("ServiceProviderName", "str", "1.3"),
    _c("HostProviderName", "str", "1.3"),
)

CUSTOM: tuple[Col, ...] = (
    _c("x_source", "str", "x"),            # focus | aws-cur | gcp-export | demo
    _c("x_partition", "str", "x"),         # replacement unit, e.g. aws-cur|<payer>|2024-05
    _c("x_ingest_id", "str", "x"),         # the delivery (manifest id / file hash) that wrote the line
    _c("x_billing_month", "str", "x"),     # invoice-aligned month 'YYYY-MM' (GCP: invoice.month)
    _c("x_line_type", "str", "x"),         # CUR line_item_line_item_type, GCP cost_type
    _c("x_usage_type", "str", "x"),
    _c("x_operation", "str", "x"),
    _c("x_export_time", "ts", "x"),        # GCP export_time
    _c("x_partition_date", "date", "x"),   # GCP ingestion-time partition
    _c("x_credits", "money", "x"),         # GCP: sum of credits.amount netted into BilledCost/EffectiveCost
    _c("x_team", "str", "x"),              # allocation keys from tags (configurable tag keys)
    _c("x_notebook_id", "str", "x"),
    _c("x_run_id", "str", "x"),
    _c("x_allocation", "str", "x"),        # direct (run tag) | proportional (notebook/team tag) | unallocated
)

COLUMNS: tuple[Col, ...] = FOCUS_12 + FOCUS_13_ADDED + CUSTOM
NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
BY_NAME = {c.name: c for c in COLUMNS}
MONEY_COLUMNS = tuple(c.name for c in COLUMNS if c.kind == "money")
DECIMAL_COLUMNS = tuple(c.name for c in COLUMNS if c.kind in ("money", "decimal"))
TS_COLUMNS = tuple(c.name for c in COLUMNS if c.kind == "ts")
FOCUS_12_NAMES = tuple(c.name for c in FOCUS_12)

CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
CHARGE_FREQUENCIES = ("One-Time", "Recurring", "Usage-Based")
SERVICE_CATEGORIES = (
    "AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases", "Developer Tools",
    "Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance", "Media", "Migration",
    "Mobile", "Networking", "Security", "Storage", "Web", "Other",
)
UNALLOCATED = "__unallocated__"
ALLOCATIONS = ("direct", "proportional", "unallocated", "shared")


def ddl() -> str:
    cols = ",\n".join(f'    "{c.name}" {c.sqltype}' for c in COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {TABLE} (\n{cols}\n);\n"
