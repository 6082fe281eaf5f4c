"""The cost table: migration 0100 is generated from cost/schema.py; FOCUS 1.2 columns, x_ custom columns;
required columns enforced with a precise error."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.cost.util import REPO, focus_line, mem_db, write_focus_csv  # noqa: E402

from cost import ingest, schema  # noqa: E402
from cost.errors import CostInputError  # noqa: E402


def test_migration_matches_schema_module():
    sql = (REPO / "collector" / "storage" / "migrations" / "0100_cost_line_items.sql").read_text()
    assert schema.ddl() in sql


def test_columns():
    assert len(schema.FOCUS_12) == 57 and len(set(schema.NAMES)) == len(schema.NAMES)
    assert all(c.name.startswith("x_") for c in schema.CUSTOM)
    con = mem_db()
    got = [r[0] for r in con.execute("DESCRIBE cost_line_items").fetchall()]
    types = {r[0]: r[1] for r in con.execute("DESCRIBE cost_line_items").fetchall()}
    assert got == list(schema.NAMES)
    assert types["BilledCost"] == "DECIMAL(38,18)" and types["ChargePeriodStart"] == "TIMESTAMP WITH TIME ZONE"


def test_required_column_empty_is_a_precise_error(tmp_path):
    rows = [focus_line("1", "2024-05-01 00:00:00", "2024-05-01 01:00:00") for _ in range(3)]
    rows[2]["BillingCurrency"] = ""
    con = mem_db()
    with pytest.raises(CostInputError) as e:
        ingest.import_files(con, [write_focus_csv(tmp_path / "x.csv", rows)], "focus")
    assert e.value.row == 3 and e.value.column == "BillingCurrency"
    rows[2]["BillingCurrency"] = "USD"
    rows[1]["ChargeCategory"] = "Bogus"
    with pytest.raises(CostInputError) as e:
        ingest.import_files(con, [write_focus_csv(tmp_path / "y.csv", rows)], "focus")
    assert e.value.row == 2 and e.value.value == "Bogus"
    assert con.execute("SELECT count(*) FROM cost_line_items").fetchall()[0][0] == 0
