"""FOCUS (1.0 to 1.3) CSV/Parquet files -> the cost table.

Accepts the quirks of real exports: literal ``NULL`` strings and blanks as nulls, timestamps without ``T``/``Z``,
case variants of allowed values (``Usage-based``), extra non-FOCUS columns (dropped; ``x_`` columns of the file are
dropped too, ours are recomputed). The replacement unit is (BillingAccountId, billing month): importing a file
again replaces exactly the lines it brought.
"""
from __future__ import annotations

from cost import schema
from cost.errors import CostInputError
from cost.normalize import (Check, Plan, TagSource, canon_value_sql, _CHARGE_CATEGORY, _CHARGE_FREQUENCY,
                            _SERVICE_CATEGORY)
from collector.storage.sqltext import ident as q
from cost.sql import money_t, text_t, ts_t

SOURCE = "focus"
# columns a FOCUS file must have; the rest of the 1.2 set may be absent (older versions, conditional columns)
REQUIRED_INPUT = ("BilledCost", "EffectiveCost", "BillingAccountId", "BillingCurrency", "BillingPeriodStart",
                  "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory", "ServiceName")
# renamed between FOCUS versions (older name -> 1.2 name)
RENAMED = {"ProviderName": "ProviderName", "Provider": "ProviderName", "Publisher": "PublisherName",
           "InvoiceIssuer": "InvoiceIssuerName", "ChargeType": "ChargeCategory", "ResourceID": "ResourceId"}


def partition_sql() -> str:
    return f"'{SOURCE}|' || \"BillingAccountId\" || '|' || x_billing_month"


def plan(columns: dict[str, str] | list[str], source: str = SOURCE, partition: str | None = None) -> Plan:
    """Build the normalisation plan for a FOCUS relation with these columns (name -> DuckDB type)."""
    types = dict(columns) if isinstance(columns, dict) else {c: None for c in columns}
    present = {}
    for c in columns:
        target = RENAMED.get(c, c)
        if target in schema.BY_NAME and not target.startswith("x_") and target not in present:
            present[target] = c
    missing = [c for c in REQUIRED_INPUT if c not in present]
    if missing:
        raise CostInputError(f"not a FOCUS file: missing column(s) {', '.join(missing)}")
    exprs: dict[str, str] = {}
    checks: list[Check] = []
    def text(raw: str) -> str:
        return text_t(q(raw), types.get(raw))

    for name, raw in present.items():
        col = schema.BY_NAME[name]
        r, typ = q(raw), types.get(raw)
        if col.kind in ("money", "decimal"):
            exprs[name] = money_t(r, typ)
            checks.append(Check(name, r, "money"))
        elif col.kind == "ts":
            exprs[name] = ts_t(r, typ)
            checks.append(Check(name, r, "ts"))
        elif col.kind == "json":
            exprs[name] = f"json({text(raw)})"
            checks.append(Check(name, r, "json"))
        else:
            exprs[name] = text(raw)
    # canonical spellings of enumerations
    exprs["ChargeCategory"] = canon_value_sql(text(present["ChargeCategory"]), _CHARGE_CATEGORY,
                                              default=text(present["ChargeCategory"]))
    if "ChargeFrequency" in present:
        exprs["ChargeFrequency"] = canon_value_sql(text(present["ChargeFrequency"]), _CHARGE_FREQUENCY)
    if "ServiceCategory" in present:
        exprs["ServiceCategory"] = canon_value_sql(text(present["ServiceCategory"]), _SERVICE_CATEGORY, "'Other'")
    else:
        exprs["ServiceCategory"] = "'Other'"
    if "ChargeClass" in present:
        exprs["ChargeClass"] = f"CASE WHEN lower({text(present['ChargeClass'])}) = 'correction' THEN 'Correction' END"
    # mandatory columns that older/partial files may leave empty: documented fallbacks
    billed = exprs["BilledCost"]
    exprs["ListCost"] = f"coalesce({exprs.get('ListCost', 'NULL')}, {billed})"
    exprs["ContractedCost"] = f"coalesce({exprs.get('ContractedCost', 'NULL')}, {billed})"
    exprs["ProviderName"] = f"coalesce({exprs.get('ProviderName', 'NULL')}, {exprs.get('PublisherName', 'NULL')}, " \
                            f"{exprs.get('InvoiceIssuerName', 'NULL')}, 'Unknown')"
    exprs["PublisherName"] = f"coalesce({exprs.get('PublisherName', 'NULL')}, {exprs['ProviderName']})"
    exprs["InvoiceIssuerName"] = f"coalesce({exprs.get('InvoiceIssuerName', 'NULL')}, {exprs['ProviderName']})"
    tags = None
    if "Tags" in present:
        tags = TagSource("json", expr=f"json({text(present['Tags'])})", keep_json=True)
    return Plan(source=source, exprs=exprs, tags=tags, partition=partition or partition_sql(), checks=checks)
