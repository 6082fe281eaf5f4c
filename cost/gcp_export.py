"""GCP Cloud Billing export (BigQuery, standard or detailed table) -> the cost table (pure).

Mapping (reference/cost.md §3): credits are netted, ``BilledCost = EffectiveCost = cost + SUM(credits.amount)``
(the gross ``cost`` stays in ListCost when ``cost_at_list`` is absent, and ContractedCost); the credit total is kept
in ``x_credits``. Labels (resource labels first, then project labels, then ``tags``) become Tags. The billing
period is ``invoice.month`` (Pacific-time month, stored as UTC instants; ``x_billing_month`` = 'YYYY-MM'), so late
usage billed in the next invoice lands in that invoice. The replacement unit is the ingestion-time partition
(billing account, ``DATE(_PARTITIONTIME)``).

Input columns are flat dotted names (``service.description``), as in the CSV flattening of the export and in a
BigQuery result flattened by ``pyarrow.Table.flatten``; repeated records (credits, labels) are lists of structs,
or in CSV text in Python-literal or JSON form (``prepare_relation`` parses them).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import duckdb

from cost.errors import CostInputError
from cost.normalize import Check, Plan, TagSource
from collector.storage.sqltext import ident as q
from cost.sql import case_map, money, money_t, nz, text_t, ts_t

SOURCE = "gcp-export"
REQUIRED = ("billing_account_id", "service.description", "usage_start_time", "usage_end_time", "cost", "currency",
            "invoice.month")
SERVICE_CATEGORY = {
    "Compute Engine": "Compute", "Kubernetes Engine": "Compute", "Cloud Run": "Compute", "Cloud Functions": "Compute",
    "App Engine": "Compute", "Batch": "Compute", "Cloud Storage": "Storage", "Filestore": "Storage",
    "BigQuery": "Analytics", "BigQuery Storage API": "Analytics", "Dataflow": "Analytics", "Dataproc": "Analytics",
    "Pub/Sub": "Integration", "Cloud Pub/Sub": "Integration", "Cloud SQL": "Databases", "Cloud Spanner": "Databases",
    "Cloud Bigtable": "Databases", "Firestore": "Databases", "Cloud Memorystore for Redis": "Databases",
    "Vertex AI": "AI and Machine Learning", "Notebooks": "AI and Machine Learning",
    "Cloud Machine Learning Engine": "AI and Machine Learning", "Gemini API": "AI and Machine Learning",
    "Networking": "Networking", "Cloud DNS": "Networking", "Cloud CDN": "Networking",
    "Cloud Load Balancing": "Networking", "Cloud Logging": "Management and Governance",
    "Stackdriver Logging": "Management and Governance", "Cloud Monitoring": "Management and Governance",
    "Stackdriver Monitoring": "Management and Governance", "Security Command Center": "Security",
    "Cloud Key Management Service (KMS)": "Security", "Secret Manager": "Security",
    "Identity Platform": "Identity", "Artifact Registry": "Developer Tools", "Cloud Build": "Developer Tools",
    "Container Registry": "Developer Tools", "Support": "Other",
}
CHARGE_CATEGORY = {"regular": "Usage", "tax": "Tax", "adjustment": "Adjustment", "rounding error": "Adjustment"}
CREDIT_TYPE = '[{"name":"VARCHAR","amount":"VARCHAR","full_name":"VARCHAR","id":"VARCHAR","type":"VARCHAR"}]'
KV_TYPE = '[{"key":"VARCHAR","value":"VARCHAR"}]'
REPEATED = {"credits": CREDIT_TYPE, "labels": KV_TYPE, "project.labels": KV_TYPE, "system_labels": KV_TYPE,
            "tags": KV_TYPE}


def _pyliteral_to_json(expr: str) -> str:
    """The koku CSV flattening writes repeated records as Python literals ([{'key': 'a', 'amount': None}])."""
    e = f"replace({expr}, '''', '\"')"
    for a, b in (("None", "null"), ("True", "true"), ("False", "false")):
        e = f"regexp_replace({e}, '\\b{a}\\b', '{b}', 'g')"
    return e


def prepare_relation(con: duckdb.DuckDBPyConnection, rel: str, cols: dict[str, str]) -> str:
    """Parse text-encoded repeated records into lists of structs (a no-op for BigQuery/Arrow input)."""
    replace = []
    for name, typ in REPEATED.items():
        if name in cols and cols[name].upper() in ("VARCHAR", "JSON"):
            replace.append(f"from_json(CAST({_pyliteral_to_json(nz(q(name)))} AS JSON), '{typ}') AS {q(name)}")
    if not replace:
        return rel
    view = rel + "_gcp"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * REPLACE ({', '.join(replace)}) FROM {rel}")
    try:
        con.execute(f"SELECT count(*) FROM {view}").fetchall()[0]
    except duckdb.Error as err:
        # find the first unparsable record for a precise message
        for name in REPEATED:
            if name in cols and cols[name].upper() in ("VARCHAR", "JSON"):
                hit = con.execute(
                    f"SELECT n, v FROM (SELECT row_number() OVER () n, {q(name)} v FROM {rel}) "
                    f"WHERE {nz('v')} IS NOT NULL AND NOT json_valid({_pyliteral_to_json(nz('v'))}) "
                    f"ORDER BY n LIMIT 1").fetchall()
                hit = hit[0] if hit else None
                if hit:
                    raise CostInputError("repeated record is neither JSON nor a Python literal list",
                                         row=hit[0], column=name, value=hit[1]) from err
        raise CostInputError(f"cannot parse repeated records: {err}") from err
    return view


def plan(cols: dict[str, str]) -> Plan:
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise CostInputError(f"not a GCP billing export: missing column(s) {', '.join(missing)}")

    def g(name: str) -> str:
        return text_t(q(name), cols[name]) if name in cols else "CAST(NULL AS VARCHAR)"

    def mon(name: str) -> str:
        return money_t(q(name), cols[name])

    def tm(name: str) -> str:
        return ts_t(q(name), cols[name])

    if "credits" in cols:
        credits = (f"coalesce(list_sum(list_transform({q('credits')}, lambda c: {money('c.amount')})), "
                   f"CAST(0 AS DECIMAL(38,18)))")
    else:
        credits = "CAST(0 AS DECIMAL(38,18))"
    gross = mon("cost")
    net = f"({gross} + {credits})"
    month = g("invoice.month")
    # invoice.month 'YYYYMM' is a Pacific-time month
    period_start = f"timezone('America/Los_Angeles', CAST(strptime({month}, '%Y%m') AS TIMESTAMP))"
    period_end = (f"timezone('America/Los_Angeles', CAST(strptime({month}, '%Y%m') AS TIMESTAMP) "
                  f"+ INTERVAL 1 MONTH)")
    entries = [f"coalesce(list_transform({q(name)}, lambda e: {{'key': e.key, 'value': e.value}}), [])"
               for name in ("labels", "project.labels", "tags") if name in cols]
    tags = TagSource("entries", entries=entries) if entries else None
    if "partition_date" in cols:
        pdate = f"CAST({tm('partition_date')} AS DATE)"
    elif "export_time" in cols:
        pdate = f"CAST({tm('export_time')} AS DATE)"
    else:
        pdate = "CAST(NULL AS DATE)"
    cost_type = f"lower(coalesce({g('cost_type')}, 'regular'))"
    exprs = {
        "BilledCost": net,
        "EffectiveCost": net,
        "ListCost": f"coalesce({mon('cost_at_list')}, {gross})" if "cost_at_list" in cols else gross,
        "ContractedCost": gross,
        "x_credits": credits,
        "BillingAccountId": g("billing_account_id"),
        "BillingCurrency": g("currency"),
        "BillingPeriodStart": period_start,
        "BillingPeriodEnd": period_end,
        "x_billing_month": f"strftime(strptime({month}, '%Y%m'), '%Y-%m')",
        "ChargePeriodStart": tm("usage_start_time"),
        "ChargePeriodEnd": tm("usage_end_time"),
        "ChargeCategory": f"coalesce({case_map(cost_type, CHARGE_CATEGORY)}, 'Usage')",
        "ChargeDescription": g("sku.description"),
        "ChargeFrequency": "'Usage-Based'",
        "ConsumedQuantity": mon("usage.amount") if "usage.amount" in cols else "NULL",
        "ConsumedUnit": g("usage.unit"),
        "PricingQuantity": f"CASE WHEN {cost_type} <> 'tax' THEN {mon('usage.amount_in_pricing_units')} END"
        if "usage.amount_in_pricing_units" in cols else "NULL",
        "PricingUnit": f"CASE WHEN {cost_type} <> 'tax' THEN {g('usage.pricing_unit')} END",
        "InvoiceIssuerName": "'Google Cloud'",
        "ProviderName": "'Google Cloud'",
        "PublisherName": f"coalesce({g('seller_name')}, 'Google Cloud')",
        "RegionId": f"coalesce({g('location.region')}, {g('location.location')})",
        "RegionName": f"coalesce({g('location.region')}, {g('location.location')})",
        "AvailabilityZone": g("location.zone"),
        "ResourceId": f"coalesce({g('resource.global_name')}, {g('resource.name')})",
        "ResourceName": g("resource.name"),
        "ServiceName": g("service.description"),
        "ServiceCategory": f"coalesce({case_map(g('service.description'), SERVICE_CATEGORY)}, 'Other')",
        "SkuId": g("sku.id"),
        "SkuMeter": g("sku.description"),
        "SubAccountId": g("project.id"),
        "SubAccountName": g("project.name"),
        "x_line_type": cost_type,
        "x_export_time": tm("export_time") if "export_time" in cols else "NULL",
        "x_partition_date": pdate,
    }
    checks = [Check(t, q(n), k) for t, n, k in (
        ("BilledCost", "cost", "money"), ("ChargePeriodStart", "usage_start_time", "ts"),
        ("ChargePeriodEnd", "usage_end_time", "ts"), ("x_export_time", "export_time", "ts"),
        ("x_partition_date", "partition_date", "ts"), ("PricingQuantity", "usage.amount_in_pricing_units", "money"),
    ) if n in cols]
    part = f"'{SOURCE}|' || \"BillingAccountId\" || '|' || strftime(x_partition_date, '%Y-%m-%d')"
    return Plan(source=SOURCE, exprs=exprs, tags=tags, partition=part, checks=checks)


# --- partition watermarks (koku's pattern, reference/cost.md §3.3) ---------------------------------------------

@dataclass(frozen=True)
class PartitionState:
    partition_date: date
    max_export_time: datetime | None
    row_count: int


def changed_partitions(remote: list[PartitionState], stored: dict[date, tuple[datetime | None, int]],
                       since: date) -> list[PartitionState]:
    """Partitions (on or after ``since``) that are new or whose MAX(export_time) or row count moved."""
    out = []
    for p in sorted(remote, key=lambda p: p.partition_date):
        if p.partition_date < since:
            continue
        old = stored.get(p.partition_date)
        if old is None or old[0] != p.max_export_time or old[1] != p.row_count:
            out.append(p)
    return out


def scan_since(today: date, last_synced: date | None, rescan_days: int, initial_days: int) -> date:
    """First partition date to look at: a trailing re-scan window behind the newest partition seen."""
    if last_synced is None:
        return today - timedelta(days=initial_days)
    return min(last_synced, today) - timedelta(days=rescan_days)


def watermark_query(table: str) -> str:
    """BigQuery SQL: one row per ingestion-time partition since @since (prunes on _PARTITIONTIME)."""
    return (f"SELECT DATE(_PARTITIONTIME) AS partition_date, MAX(export_time) AS max_export_time, "
            f"COUNT(*) AS row_count FROM `{table}` WHERE DATE(_PARTITIONTIME) >= @since GROUP BY 1 ORDER BY 1")


def partition_query(table: str) -> str:
    """BigQuery SQL: every row of one ingestion-time partition, with the partition date."""
    return (f"SELECT *, DATE(_PARTITIONTIME) AS partition_date FROM `{table}` "
            f"WHERE DATE(_PARTITIONTIME) = @partition_date")


def partition_key(billing_account: str, d: date) -> str:
    return f"{SOURCE}|{billing_account}|{d.isoformat()}"
