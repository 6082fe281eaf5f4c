"""Set-based validation of many events at once: the vectorised contract.

The contract is the pydantic models of collector/contract/events.py. `compile_contract` walks each event model's
pydantic-core schema (what pydantic itself executes: strictness, literals, length and range constraints, the
aware-datetime rule, defaults, nested models, field validators) into a plan per type; `BulkCompiler` turns the
plans into one DuckDB statement and a set of polars expressions that decide a whole chunk of JSON lines at once:

* DuckDB parses each line (envelope and every data field any type declares, as JSON text re-rendered by DuckDB)
  and computes what needs a JSON engine: key counts (extras, duplicates, explicit nulls), floats and date-times
  in their stored rendering, nested free-form values, lists of cells, the distinct-value validator look-ups;
* polars evaluates every field check column-wise, one expression per distinct check (not per type), combines
  them per type with bitmasks, and builds the stored `data` text and the common columns;
* the redactor's PREFILTER_PATTERN runs (polars `str.contains`) on the text the redactor would scan.

The fast path only ever says "accepted, and here is the row"; it never rejects. A row goes to the exact pydantic
path (`validation.check_item` + `validation.to_row`) whenever the fast path cannot vouch for it:

* the line is not plain JSON as orjson reads it (invalid, NaN/Infinity, trailing commas, duplicate keys, bad
  UTF-8, not an object), its `type` is unknown, or its type uses a construct the compiler does not support;
* a value is not in canonical form (a float given as "5", an int given as 5.0, a date-time that is not
  RFC 3339 with an offset, a number whose JSON rendering by DuckDB and by orjson could differ, a control
  character, nested objects inside free-form values, ...), or the event time is near the 24 h future limit;
* a field validator (`cron`, `timezone`) rejected or transformed the value: validators run in Python on the
  *distinct* values of a chunk, not per row;
* the prefilter flags a candidate secret: redaction then happens in `to_row`, exactly as for the API.

So every rejection, with pydantic's messages and field paths, comes from the same code as the HTTP API, and
every row the fast path accepts is one pydantic accepts with the same column values (`data` is the compact JSON
of the validated data: declared fields in model order, None dropped, floats as floats, date-times in pydantic's
rendering, extras after, in input order). tests/contract/test_bulk_equivalence.py checks this property against
`validation.validate_items` on generated valid and mutated events.

Modules, in the order a chunk meets them: `plan` (the pydantic-core schemas walked into per-type plans), `sql`
(the DuckDB statement), `checks` (the polars expressions), `compiler` (both, built once per process), `lines`
(NDJSON bytes and Parquet-shaped tables as JSON lines), `validator` (running a chunk: fast path, then the exact
path for the rest).
"""

from collector.contract.vectorized.compiler import BulkCompiler, compiler
from collector.contract.vectorized.lines import PARQUET_COLUMNS, parquet_lines, split_lines
from collector.contract.vectorized.validator import (BulkResult, BulkValidator, default_validator,
                                                     validate_json_items, validate_ndjson, validate_parquet_table)

__all__ = ["PARQUET_COLUMNS", "BulkCompiler", "BulkResult", "BulkValidator", "compiler", "default_validator",
           "parquet_lines", "split_lines", "validate_json_items", "validate_ndjson", "validate_parquet_table"]
