"""The polars half of the fast path: every field check, column-wise, and the stored columns.

One vectorised expression per distinct field check (not per event type), combined per type with bitmasks; the
stored `data` text is concatenated from per-field outputs in one field order per family of types; the common
columns are decoded from their JSON text; `scan` is the text the secret redactor would scan.
"""

from __future__ import annotations

import polars as pl

from collector.contract.events import IDENTIFIER_KEYS
from collector.contract.redaction import has_candidate
from collector.contract.validation import COMMON_COLUMNS
from collector.contract.vectorized.plan import FieldPlan, Kind, TypePlan, Unsupported, null_ok
from collector.contract.vectorized.sql import INT_RE, SqlPlan, jtext


def _order_families(plans: list["TypePlan"]) -> list[tuple[list[str], list[str]]]:
    """Group types whose declared field orders agree into families, each with one field order: the data text
    of every type of a family is the concatenation of that order's outputs (absent fields are skipped).
    Usually one family: a topological order of "declared before" over all types."""
    names = list(dict.fromkeys(f.name for p in plans for f in p.data))
    after: dict[str, set[str]] = {n: set() for n in names}
    indeg = dict.fromkeys(names, 0)
    for p in plans:
        fs = [f.name for f in p.data]
        for a, b in zip(fs, fs[1:]):
            if b not in after[a]:
                after[a].add(b)
                indeg[b] += 1
    order: list[str] = []
    ready = [n for n in names if indeg[n] == 0]
    while ready:
        n = min(ready, key=names.index)
        ready.remove(n)
        order.append(n)
        for m in after[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) == len(names):
        return [([p.type for p in plans], order)]
    families: list[tuple[list[str], list[str]]] = []  # (types, order)
    for p in plans:
        names = [f.name for f in p.data]
        for types, order in families:
            merged = _merge_orders(order, names)
            if merged is not None:
                order[:] = merged
                types.append(p.type)
                break
        else:
            families.append(([p.type], list(names)))
    return families


def _merge_orders(a: list[str], b: list[str]) -> list[str] | None:
    """A total order containing both sequences in their relative orders, or None when they conflict."""
    common = [x for x in a if x in b]
    if common != [x for x in b if x in a]:
        return None
    out: list[str] = []
    i = j = 0
    while i < len(a) or j < len(b):
        if i < len(a) and a[i] not in b:
            out.append(a[i])
            i += 1
        elif j < len(b) and b[j] not in a:
            out.append(b[j])
            j += 1
        else:  # both at the same common element
            out.append(a[i])
            i += 1
            j += 1
    return out


def pl_lit_in(col: pl.Expr, values: list[str]) -> pl.Expr:
    return col.is_in(pl.Series(values, dtype=pl.String))


class Checks:
    """The polars stages run after the statement: `stage_states` (per check: absent / null / ok / bad, and each
    field's output text), then `stage_final` (idx, ok, the EVENT_SCHEMA columns except redactions, scan)."""

    def __init__(self, plans: list[TypePlan], q: SqlPlan) -> None:
        pos = q.pos
        col = pl.col

        def no_bs(e: pl.Expr) -> pl.Expr:
            return ~e.str.contains("\\", literal=True)

        def str_ok(e: pl.Expr, kind: Kind) -> pl.Expr:
            ok = e.str.starts_with('"')
            if kind.min_length == 1:
                ok = ok & (e != '""')
            elif kind.min_length:
                ok = ok & no_bs(e) & (e.str.len_chars() - 2 >= kind.min_length)
            if kind.max_length is not None:
                ok = ok & ((e.str.len_bytes() - 2 <= kind.max_length) |
                           (no_bs(e) & (e.str.len_chars() - 2 <= kind.max_length)))
            return ok

        def bounds(x: pl.Expr, kind: Kind) -> pl.Expr:
            ok = pl.lit(True)
            for op, val in kind.bounds:
                ok = ok & {"ge": x >= val, "gt": x > val, "le": x <= val, "lt": x < val}[op]
            return ok

        def value_ok(k: int, f: FieldPlan) -> pl.Expr:
            d, t = col(f"d{pos[f.name]}"), f.kind.tag
            if t == "str":
                ok = str_ok(d, f.kind)
            elif t == "literal":
                ok = pl_lit_in(d, [jtext(x) for x in f.kind.values])
            elif t == "bool":
                ok = pl_lit_in(d, ["true", "false"])
            elif t == "int":
                ok = d.str.contains(f"^(?:{INT_RE})$") & bounds(d.cast(pl.Int64, strict=False), f.kind)
                if f.name in COMMON_COLUMNS:  # stored in an INTEGER column
                    ok = ok & d.cast(pl.Int32, strict=False).is_not_null()
            elif t == "float":
                x = col(f"x{pos[f.name]}")
                ok = x.is_finite() & (x.abs() < 1e15) & ~((x.abs() >= 9e-7) & (x.abs() < 2e-5)) & bounds(x, f.kind)
            else:  # datetime, dict, any, list: decided in DuckDB
                ok = col(f"ok{k}")
            if f.validators:
                ok = ok & col(f"vok{k}")
            return ok

        state_exprs = []
        for k, f in enumerate(q.sig_fields):
            d = col(f"d{pos[f.name]}")
            state_exprs.append(pl.when(d.is_null()).then(pl.lit(0, pl.UInt8)).when(d == "null").then(pl.lit(1, pl.UInt8))
                               .when(value_ok(k, f).fill_null(False)).then(pl.lit(2, pl.UInt8))
                               .otherwise(pl.lit(3, pl.UInt8)).alias(f"c{k}"))
        # The output text of each field ("name":value), per name and output kind.
        out_exprs, out_col = [], {}
        for p in plans:
            for f in p.data:
                t = f.kind.tag
                okind = t if t in ("float", "datetime", "dict", "any") else "raw"
                key = (f.name, okind)
                if key in out_col:
                    continue
                i = pos[f.name]
                src = col(f"d{i}") if okind == "raw" else col(f"out_{okind}_{i}")
                name = f"o{len(out_col)}"
                out_col[key] = name
                d = col(f"d{i}")
                out_exprs.append(pl.when(d.is_null() | (d == "null")).then(None)
                                 .otherwise(pl.lit(jtext(f.name) + ":") + src).alias(name))

        def okind(f: FieldPlan) -> str:
            return f.kind.tag if f.kind.tag in ("float", "datetime", "dict", "any") else "raw"

        etype = col("e_type")
        if len(q.sig_fields) <= 63 and len(q.names) <= 63:
            # Bitmasks: which names are present, which field checks failed; per type, the checks it uses and
            # the names it requires. A JSON null reads as absent here (the MAP path checks nulls per type).
            present = pl.sum_horizontal([col(f"d{i}").is_not_null().cast(pl.UInt64) * (1 << (i - 1))
                                         for i in range(1, len(q.names) + 1)])
            bad = pl.sum_horizontal([(col(f"c{k}") == 3).cast(pl.UInt64) * (1 << k)
                                     for k in range(len(q.sig_fields))])
            used, req = {}, {}
            for p in plans:
                used[jtext(p.type)] = sum(1 << q.sig_of[(p.type, f.name)] for f in p.data)
                req[jtext(p.type)] = sum(1 << (pos[f.name] - 1) for f in p.data if f.required)
            u = etype.replace_strict(used, default=None, return_dtype=pl.UInt64)
            r = etype.replace_strict(req, default=None, return_dtype=pl.UInt64)
            type_ok = (((bad & u) == 0) & ((present & r) == r)).fill_null(False)
        else:  # pragma: no cover - a contract with more than 63 distinct fields
            allowed = {(False, False): [2], (False, True): [1, 2], (True, False): [0, 2], (True, True): [0, 1, 2]}
            chain = None
            for p in plans:
                verdict = pl.lit(True)
                for f in p.data:
                    verdict = verdict & col(f"c{q.sig_of[(p.type, f.name)]}").is_in(
                        pl.Series(allowed[(not f.required, null_ok(f))], dtype=pl.UInt8))
                chain = (pl.when(etype == jtext(p.type)) if chain is None else chain.when(etype == jtext(p.type)))
                chain = chain.then(verdict)
            assert chain is not None
            type_ok = chain.otherwise(False)

        def env_ok(f: FieldPlan) -> pl.Expr:
            e = col(f'e_{f.name}')
            if f.kind.tag == "event_time":
                chk = col("t_ok").fill_null(False)
            elif f.name == "type":
                chk = pl.lit(True)  # the per-type verdict only matches known types
            elif f.kind.tag == "str":
                chk = str_ok(e, f.kind)
            elif f.kind.tag == "literal":
                chk = pl_lit_in(e, [jtext(x) for x in f.kind.values])
            else:
                raise Unsupported(f"envelope field {f.name} of kind {f.kind.tag}")
            return (pl.when(e.is_null()).then(not f.required).when(e == "null").then(f.nullable)
                    .otherwise(chk.fill_null(False)))

        ok = ~col("top_dup") & type_ok & ~(col("has_extras") & ~col("extras_ok").fill_null(False))
        for f in q.env:
            ok = ok & env_ok(f)

        def decoded(e: pl.Expr, u: str) -> pl.Expr:
            return pl.when(e.is_null() | (e == "null")).then(None).otherwise(
                pl.coalesce(col(u), e.str.strip_prefix('"').str.strip_suffix('"')))

        # The data text: per family of types sharing one field order, the outputs in that order.
        families = _order_families(plans)
        data = None
        for types, order in families:
            by_name = {}
            for p in plans:
                if p.type in types:
                    for f in p.data:
                        by_name.setdefault(f.name, set()).add(out_col[(f.name, okind(f))])
            parts = []
            for n in order:
                cols_ = sorted(by_name[n])
                if len(cols_) == 1:
                    parts.append(col(cols_[0]))
                else:  # same name, different output kinds in different types of the family
                    e = None
                    for p in plans:
                        if p.type in types:
                            for f in p.data:
                                if f.name == n:
                                    c_ = col(out_col[(n, okind(f))])
                                    e = pl.when(etype == jtext(p.type)).then(c_) if e is None else \
                                        e.when(etype == jtext(p.type)).then(c_)
                    parts.append(e.otherwise(None))  # type: ignore[union-attr]
            text = pl.concat_str([pl.lit("{"), pl.concat_str(parts + [col("extras_out")], separator=",",
                                                                    ignore_nulls=True), pl.lit("}")])
            if len(families) == 1:
                data = text
                break
            cond = pl_lit_in(etype, [jtext(t) for t in types])
            data = pl.when(cond).then(text) if data is None else data.when(cond).then(text)
        assert data is not None
        self.families = families
        self.out_col = out_col
        # For rows with extra keys: a field another type declares is an extra here, not a declared output.
        self.declared_by = {n: [jtext(p.type) for p in plans if any(f.name == n for f in p.data)]
                            for n in q.names}

        commons = []
        for c in COMMON_COLUMNS:
            if c not in pos:
                commons.append(pl.lit(None, pl.Int32 if c == "attempt" else pl.String).alias(c))
                continue
            d = col(f"d{pos[c]}")
            if c == "attempt":
                v = pl.when(d.is_null() | (d == "null")).then(None).otherwise(d.cast(pl.Int32, strict=False))
                runs = [jtext(p.type) for p in plans if p.type.startswith("notebook.run.")]
                v = pl.when(pl_lit_in(etype, runs)).then(v.fill_null(1)).otherwise(v)
            else:
                v = decoded(d, f"u_{c}")
            if len(self.declared_by[c]) < len(plans):
                v = pl.when(pl_lit_in(etype, self.declared_by[c])).then(v).otherwise(None)
            commons.append(v.alias(c))
        scanned = [col(out_col[key]) for key in out_col if key[0] not in IDENTIFIER_KEYS]
        idents = [col(out_col[key]) for key in out_col if key[0] in IDENTIFIER_KEYS]
        scanned += [pl.when(col(f"d{pos[n]}").is_not_null()).then(pl.lit(n)) for n in q.names
                    if n in IDENTIFIER_KEYS and has_candidate(n)]
        self.stage_states = state_exprs + out_exprs
        self.stage_final = [
            col("idx"), ok.alias("ok"), col("t_ts").alias("time"),
            decoded(col("e_source"), "u_e_source").alias("source"), decoded(col("e_id"), "u_e_id").alias("id"),
            etype.str.strip_prefix('"').str.strip_suffix('"').alias("type"),
            decoded(col("e_subject"), "u_e_subject").alias("subject"), *commons,
            data.alias("data"),
            pl.concat_str(scanned + [col("extras_out")], separator=",", ignore_nulls=True).alias("scan"),
            pl.concat_str(idents, separator=",", ignore_nulls=True).alias("idents"),
        ]
