"""Batch validation of events, compiled from the contract: the one validation path of every channel.

The contract is the pydantic models of collector/contract/events.py. `plan.compile_contract` walks each event
model's pydantic-core schema (what pydantic itself executes: strictness, literals, length and range constraints,
the aware-datetime rule, defaults, nested models, field validators) into a plan per type; `codegen` turns the
plans into one generated Python function per type that decides a parsed item in a single pass, and one that
takes a stored `data` object to typed columns; `structs` compiles the same plans into msgspec Structs that decode
and check a JSON line in one C call and give the generated check's tuple. `validator` runs a whole batch: the
struct stage decides the lines it can vouch for, orjson parses the others once, the generated checks accept what
they can vouch for, the redactor's PREFILTER_PATTERN runs column-wise (polars
`str.contains`) over the stored text, and the batch comes out as one Arrow table (storage.schema.INGEST_SCHEMA:
the columns of `events` plus the typed fields the derived tables need).

The fast path only ever says "accepted, and here is the row"; it never rejects. A row goes to the exact pydantic
path (`validation.check_item` + `validation.to_row`) whenever the fast path cannot vouch for it:

* the line is not JSON as orjson reads it, the item is not an object, its `type` is unknown;
* a value is not in the plain form the generated code accepts (a float given as "5", an int given as 5.0, a
  bool for a number, a date-time that is not RFC 3339 with an offset, an int beyond 2**53 for a float field,
  a list item with extra keys, ...);
* the event time is not RFC 3339 with an offset, names no date or is near the 24 h future limit (checked
  column-wise for the batch: `validator.event_times`);
* a field validator (`cron`, `timezone`) rejected or transformed the value (verdicts are cached per value);
* the prefilter flags a candidate secret in the stored text or the subject: redaction then happens in
  `to_row`, exactly as it always has.

So every rejection, with pydantic's messages and field paths, and every redaction come from the reference code,
and every row the fast path accepts is one pydantic accepts with the same column values (`data` is the compact
JSON of the validated data: declared fields in model order, None dropped at the top level, floats as floats,
date-times in pydantic's rendering, extras after, in input order). Both paths read the same parsed object, so
JSON text forms (escapes, duplicate keys, number renderings) cannot make them differ.
tests/contract/test_bulk_equivalence.py checks the property against `validation.validate_items` on generated
valid and mutated events.

Modules: `plan` (schemas -> plans), `codegen` (plans -> generated functions, built once per process), `structs`
(plans -> msgspec Structs, the first stage of a line), `lines` (NDJSON bytes and Parquet-shaped tables as JSON
lines), `validator` (running a batch).
"""

from collector.contract.vectorized.codegen import Compiled, compiled
from collector.contract.vectorized.lines import PARQUET_COLUMNS, parquet_lines, split_lines
from collector.contract.vectorized.validator import (BulkResult, BulkValidator, default_validator,
                                                     validate_json_items, validate_ndjson, validate_parquet_table)

__all__ = ["PARQUET_COLUMNS", "BulkResult", "BulkValidator", "Compiled", "compiled", "default_validator",
           "parquet_lines", "split_lines", "validate_json_items", "validate_ndjson", "validate_parquet_table"]
