"""Secret scanner and redactor applied to text fields at ingest.

Every text field that may reach storage, logs or exports (``error_message``,
``msg``, tracebacks, run parameters, ...) goes through :func:`redact_text` or
:func:`redact_value`.  A credential is replaced by ``[REDACTED:<kind>]``; the
rest of the text is kept byte for byte.  See docs/redaction.md.

Design
------
* **Prefilter first.**  :data:`PREFILTER_PATTERN` is one regular expression
  that matches every string :func:`redact_text` would change (it is a superset
  filter).  The common case - a short string without any candidate - costs one
  compiled ``re.search``.  The pattern is written in the subset of syntax shared
  by Python ``re`` and the Rust ``regex`` crate (no look-around, no
  back-references, no ``\\s``/``\\w``/``\\d``/``\\b`` whose meaning differs),
  so bulk paths can run it in polars (``str.contains``) and call the Python
  redactor only on candidate rows.
* **Detectors.**  Each detector is a compiled regex (compiled with
  ``re.ASCII`` so classes and case-insensitivity are ASCII-only), a kind, the
  prefilter fragment that every one of its matches contains, a cheap substring
  gate and an optional validator that rejects placeholders and look-alikes.
  Only the part of the match that is the secret is replaced (the user and the
  host of a URL, the key of an assignment survive).
* **Spans, then one rebuild.**  All detectors run on the same text; the secret
  spans are merged (overlaps are unioned, the kind of the most specific
  detector wins) and the output is built once.  Markers are never re-matched;
  a further pass runs only when something was redacted, until nothing changes,
  so redaction is idempotent.

Adding a kind: see docs/redaction.md ("How to add a kind").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

__all__ = [
    "KINDS",
    "PREFILTER_PATTERN",
    "has_candidate",
    "redact_text",
    "redact_value",
]

_MARKER_FMT = "[REDACTED:{}]"

Validator = Callable[[re.Match[str], str], bool]


@dataclass(frozen=True, slots=True)
class _Detector:
    kind: str
    pattern: str
    # Alternatives of PREFILTER_PATTERN, one of which every match of
    # ``pattern`` contains.  Each starts with a literal character so the
    # combined pattern can be grouped by first character (fast in Python re).
    prefilter: tuple[str, ...]
    # Cheap gate: at least one needle must occur in the text (``text.lower()``
    # when ``ci``) before the regex runs.  Every match must contain a needle.
    needles: tuple[str, ...]
    ci: bool = False
    # Named groups holding the secret (first that participated wins); the
    # whole match when empty.
    groups: tuple[str, ...] = ()
    validate: Validator | None = None
    # Lower-case substring that must appear somewhere in the text.
    requires: str | None = None


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------

_B64 = r"[A-Za-z0-9+/=]"
_LINEBREAK = r"(?:\r?\n|(?:\\+r)?\\+n)"  # real or JSON-escaped line break
_PEM_BEGIN = r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_PEM_END = r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_PEM_HEADER = r"(?:Proc-Type|DEK-Info):[ \t]*[A-Za-z0-9,-]+"
_PEM_EOL = r"""(?=[ \t]*(?:\r?\n|\\+[rn]|$)|\\?["'])"""  # the end of a line of a key block
_Q = r"""\\?["']"""  # a quote, possibly escaped (JSON inside a JSON string)

# Keys of a password/secret/token assignment.  The keyword must be followed
# directly (modulo an allowed suffix) by the separator: ``max_tokens=``,
# ``tokenizer=`` or ``secret_name=`` are not keys.
_KEYWORDS = r"pass(?:word|wd|phrase)|pwd|secret|token|api[_-]?key|access[_-]?key"
_KEY_SUFFIX = r"(?i:[_.-]?(?:key|value))?"  # secret_key, apiKey, password_value


def _ci(word: str) -> tuple[str, ...]:
    """Prefilter alternatives matching ``word`` case-insensitively (ASCII), each starting with a literal."""
    rest = f"(?i:{word[1:]})" if len(word) > 1 else ""
    return (word[0].lower() + rest, word[0].upper() + rest)


# Every match of an assignment detector contains one of these pieces of its
# keyword (secret -> "cret", token -> "ken", api_key -> "pi_key", ...).
# Prefilter alternatives start at an uncommon letter where they can: Python's
# re only tries positions whose character starts some alternative, so leaving
# e, t, a, s, h, n, r, d out of that set makes the clean-text scan ~3x faster.
_KEYWORD_PREFILTER: tuple[str, ...] = (
    _ci("pass(?:word|wd|phrase)")
    + _ci("pwd")
    + _ci("cret")
    + _ci("ken")
    + _ci("pi[_-]?key")
    + _ci("cess[_-]?key")
)

_PLACEHOLDER_WORDS = frozenset(
    {
        "none", "null", "nil", "undefined", "true", "false", "empty", "string",
        "str", "bytes", "int", "required", "optional", "hidden", "masked",
        "redacted", "removed", "filtered", "secret", "password", "passwd",
        "token", "placeholder", "example", "dummy", "changeit", "todo", "tbd",
        "n/a", "na", "unset", "omitted", "sensitive", "value",
    }
)
_PLACEHOLDER_RE = re.compile(
    r"""
    \[?REDACTED(?::[a-z0-9_]+)?\]?      # our own marker or a bare REDACTED
    | [*xX.#?•\-_]+                      # ****, xxxx, ...., ----
    | \$\{[^}]*\}? | \$\([^)]*\)? | \$[A-Za-z_][A-Za-z0-9_]*   # ${PW} $(cmd) $PW
    | %\([A-Za-z0-9_]*\)[sdr] | %[sdr]   # %(password)s  %s
    | \{\{.*\}\} | \{[A-Za-z0-9_.]*\} | \#\{[^}]*\}           # {{ var }} {pw} #{pw}
    | <[^>]*> | \[[A-Za-z0-9 _-]*\] | \([A-Za-z0-9 _-]*\)     # <token> [hidden] (none)
    | [A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+      # DB_PASSWORD, YOUR_TOKEN_HERE (an env name)
    | (?i:your|enter|insert|replace)[_\- ].*                 # your-api-key, enter-token-here
    """,
    re.ASCII | re.VERBOSE | re.DOTALL,
)
_REFERENCE_RE = re.compile(r"(?i:pass(?:word|wd)|secret|token|api[_-]?key|access[_-]?key)", re.ASCII)
_CODE_REF_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+", re.ASCII)
_IDENT_RE = re.compile(r"[A-Za-z_]+", re.ASCII)  # a variable name without digits
_PATH_RE = re.compile(r"(?:~?/|\.{1,2}/|[A-Za-z]:\\)[^\s]*", re.ASCII)
_ALPHA_RE = re.compile(r"[A-Za-z]+", re.ASCII)


def _is_placeholder(value: str) -> bool:
    v = value.strip()
    if not v:
        return True
    if v.lower() in _PLACEHOLDER_WORDS:
        return True
    if "[REDACTED:" in v:
        return True
    return _PLACEHOLDER_RE.fullmatch(v) is not None


def _has_digit(s: str) -> bool:
    return any("0" <= c <= "9" for c in s)


def _has_alpha(s: str) -> bool:
    return any(("a" <= c <= "z") or ("A" <= c <= "Z") for c in s)


def _secret_span(m: re.Match[str], groups: tuple[str, ...]) -> tuple[int, int]:
    for name in groups:
        start = m.start(name)
        if start != -1:
            return start, m.end(name)
    return m.start(), m.end()


# --------------------------------------------------------------------------
# Validators
# --------------------------------------------------------------------------


def _mixed_token_ok(m: re.Match[str], text: str) -> bool:
    s, e = _secret_span(m, ("secret",))
    value = text[s:e]
    return _has_digit(value) and any(c.isupper() for c in value) and any(c.islower() for c in value)


def _digit_ok(m: re.Match[str], text: str) -> bool:
    s, e = _secret_span(m, ("secret",))
    return _has_digit(text[s:e])


def _not_placeholder(m: re.Match[str], text: str) -> bool:
    s, e = _secret_span(m, ("secret",))
    return not _is_placeholder(text[s:e])


def _url_password_ok(m: re.Match[str], text: str) -> bool:
    return not _is_placeholder(m.group("secret"))


def _assignment_value_ok(keyword: str, value: str, *, quoted: bool, sep: str = "=", next_char: str = "") -> bool:
    """Does ``value`` look like a real credential for ``keyword``?"""
    kw = keyword.lower()
    token_family = not (kw.startswith("pass") or kw == "pwd" or kw == "secret")
    if _is_placeholder(value):
        return False
    if _REFERENCE_RE.search(value):  # password=db_password, token="<your token>"
        return False
    if _PATH_RE.fullmatch(value):  # PWD=/home/jovyan, secret: /var/run/secrets/x
        return False
    if token_family:
        if len(value) < 8 or not _has_digit(value) or not _has_alpha(value):
            return False
        if any(c.isspace() for c in value):
            return False
    elif len(value) < 3:
        return False
    if not quoted:
        if next_char and next_char in "([":  # getpass(), os.environ["PW"]
            return False
        if next_char == ")" and _IDENT_RE.fullmatch(value):  # connect(password=pw)
            return False
        if _CODE_REF_RE.fullmatch(value):  # password=args.password, cfg.pw
            return False
        if sep == ":" and _ALPHA_RE.fullmatch(value):  # "password: incorrect", "secret: missing"
            return False
    return True


def _assignment_ok(m: re.Match[str], text: str) -> bool:
    for name in ("dq", "sq", "eq", "uq"):
        start = m.start(name)
        if start != -1:
            break
    else:  # pragma: no cover - the regex always sets one
        return False
    value = m.group(name)
    end = m.end(name)
    next_char = text[end] if end < len(text) and name == "uq" else ""
    return _assignment_value_ok(
        m.group("kw"), value, quoted=name != "uq", sep=m.group("sep") or "", next_char=next_char
    )


# --------------------------------------------------------------------------
# Detectors, most specific first (this order is the overlap priority)
# --------------------------------------------------------------------------

_ASSIGN_VALUE = (
    r'(?:"(?P<dq>(?:[^"\\\r\n]|\\.)*)"'
    r"|'(?P<sq>(?:[^'\\\r\n]|\\.)*)'"
    r'|\\"(?P<eq>(?:[^"\\\r\n]|\\[^"\r\n])*)\\"'
    # unquoted: stops at whitespace, quotes, brackets; "," ";" "&" end the value
    # only before whitespace, the end or another "key=" (a=1&b=2, k=v;k2=v2)
    r"""|(?P<uq>[^\s"'`,;&<>(){}\[\]#\\]"""
    r"""(?:[^\s"'`,;&<>(){}\[\]\\]|[,;&](?![\s,;&]|$|[A-Za-z0-9_.\[\]-]+[=:]))*))"""
)

_DETECTORS: tuple[_Detector, ...] = (
    # --- GCP service-account key file (JSON) --------------------------------
    _Detector(
        kind="gcp_service_account_key",
        pattern=rf"{_Q}private_key_id{_Q}[ \t]*:[ \t]*{_Q}(?P<secret>[0-9a-f]{{40}})(?=\\?[\"'])",
        prefilter=("private_key_id",),
        needles=("private_key_id",),
        groups=("secret",),
    ),
    _Detector(
        kind="gcp_service_account_key",
        pattern=(
            rf"{_Q}private_key{_Q}[ \t]*:[ \t]*{_Q}"
            rf"(?P<secret>{_PEM_BEGIN}(?:[^\"'\\]|\\[^\"'])*)"
        ),
        prefilter=("PRIVATE KEY",),
        needles=("PRIVATE KEY",),
        groups=("secret",),
        requires="service_account",
    ),
    # --- PEM private key block (whole block, multi-line) --------------------
    _Detector(
        kind="private_key",
        pattern=(
            rf"{_PEM_BEGIN}"
            # (1) complete block: base64 / whitespace / PEM headers up to END
            rf"(?:(?P<body>(?:[ \t\r\n]|\\+[rn]|{_B64}|{_PEM_HEADER})*?){_PEM_END}"
            # (2) truncated block (no END, however short): the header and every base64 or PEM-header line
            #     after it, with real or JSON-escaped line breaks
            #     (a line counts when it holds nothing else, so a traceback line after it survives)
            rf"|(?P<tbody>(?:[ \t]*(?:{_PEM_HEADER}|{_B64}+){_PEM_EOL})?"
            rf"(?:(?:{_LINEBREAK}[ \t]*)+(?:{_PEM_HEADER}|{_B64}+){_PEM_EOL})*))"
        ),
        prefilter=("PRIVATE KEY",),
        needles=("PRIVATE KEY",),
    ),
    # --- vendor tokens with a distinctive prefix ----------------------------
    _Detector(
        kind="aws_access_key",
        pattern=r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
        prefilter=("A[KS]IA[A-Z0-9]{16}",),
        needles=("AKIA", "ASIA"),
    ),
    _Detector(
        kind="gcp_api_key",
        pattern=r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])",
        prefilter=("AIza[0-9A-Za-z_-]{35}",),
        needles=("AIza",),
    ),
    _Detector(
        kind="github_token",
        pattern=(
            r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}"
            r"|github_pat_[A-Za-z0-9_]{22,})(?![A-Za-z0-9_])"
        ),
        prefilter=("gh[pousr]_[A-Za-z0-9]{36}", "github_pat_[A-Za-z0-9_]{22}"),
        needles=("gh", "github_pat_"),
    ),
    _Detector(
        kind="gitlab_token",
        pattern=r"(?<![A-Za-z0-9_-])gl(?:pat|dt|rt|ptt|cbt)-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+)*",
        prefilter=("gl(?:pat|dt|rt|ptt|cbt)-[A-Za-z0-9_-]{20}",),
        needles=("gl",),
    ),
    _Detector(
        kind="slack_webhook",
        pattern=r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/-]{20,})",
        prefilter=(r"ks\.slack\.com/",),
        needles=("hooks.slack.com/",),
        groups=("secret",),
    ),
    _Detector(
        kind="slack_token",
        pattern=r"(?<![A-Za-z0-9_-])(?:xox[baprse]-[A-Za-z0-9-]{10,}|xapp-[0-9]-[A-Za-z0-9-]{10,})",
        prefilter=("xox[baprse]-", "xapp-"),
        needles=("xox", "xapp-"),
    ),
    _Detector(
        kind="stripe_key",
        pattern=r"(?<![A-Za-z0-9_])[rs]k_(?:live|test)_[A-Za-z0-9]{16,}(?![A-Za-z0-9_])",
        prefilter=("k_(?:live|test)_[A-Za-z0-9]{16}",),
        needles=("k_live_", "k_test_"),
    ),
    _Detector(
        kind="anthropic_key",
        pattern=r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{20,}",
        prefilter=("k-[A-Za-z0-9_-]{20}",),
        needles=("sk-ant-",),
    ),
    _Detector(
        kind="openai_key",
        pattern=r"(?<![A-Za-z0-9_-])sk-(?P<secret>(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,})",
        prefilter=("k-[A-Za-z0-9_-]{20}",),
        needles=("sk-",),
        validate=_mixed_token_ok,
    ),
    _Detector(
        kind="npm_token",
        pattern=r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])",
        prefilter=("pm_[A-Za-z0-9]{36}",),
        needles=("npm_",),
    ),
    _Detector(
        kind="databricks_token",
        pattern=r"(?<![A-Za-z0-9_])dapi[0-9a-f]{32}(?:-[0-9]+)?(?![A-Za-z0-9_])",
        prefilter=("pi[0-9a-f]{32}",),
        needles=("dapi",),
    ),
    _Detector(
        kind="huggingface_token",
        pattern=r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,}(?![A-Za-z0-9_])",
        prefilter=("f_[A-Za-z0-9]{30}",),
        needles=("hf_",),
    ),
    _Detector(
        kind="pypi_token",
        pattern=r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
        prefilter=("AgEIcHlwaS5vcmc",),
        needles=("pypi-AgEIcHlwaS5vcmc",),
    ),
    _Detector(
        kind="jwt",
        pattern=(
            r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"
            r"(?:\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)?"
        ),
        prefilter=("yJ[A-Za-z0-9_-]{10}",),
        needles=("eyJ",),
    ),
    # --- secrets recognised by their context --------------------------------
    _Detector(
        kind="aws_secret_key",
        pattern=(
            r"(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key)\\?[\"']?[ \t]*(?:=>|:=|=|:)[ \t]*\\?[\"']?"
            r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        prefilter=_KEYWORD_PREFILTER,
        needles=("secret",),
        ci=True,
        groups=("secret",),
        validate=_not_placeholder,
    ),
    _Detector(
        kind="azure_storage_key",
        pattern=r"(?i:AccountKey|SharedAccessKey)[ \t]*=[ \t]*(?P<secret>[A-Za-z0-9+/]{20,}={0,2})",
        prefilter=_ci("countkey") + _KEYWORD_PREFILTER,  # SharedAccessKey contains "cesskey"
        needles=("accountkey", "sharedaccesskey"),
        ci=True,
        groups=("secret",),
    ),
    _Detector(
        kind="basic_auth",
        pattern=(
            r"(?i:authorization)\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?(?i:basic)[ \t]+"
            r"(?P<secret>[A-Za-z0-9+/]{8,}={0,2})"
        ),
        prefilter=_ci("uthorization"),
        needles=("authorization",),
        ci=True,
        groups=("secret",),
        validate=_not_placeholder,
    ),
    _Detector(
        kind="bearer_token",
        pattern=(
            r"(?i:authorization)\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?(?i:bearer|token)[ \t]+"
            r"(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)"
        ),
        prefilter=_ci("uthorization"),
        needles=("authorization",),
        ci=True,
        groups=("secret",),
        validate=_not_placeholder,
    ),
    _Detector(
        kind="bearer_token",
        pattern=r"(?<![A-Za-z0-9_])(?i:bearer)[ \t]+(?P<secret>[A-Za-z0-9._~+/-]{20,}=*)",
        prefilter=_ci("bearer"),
        needles=("bearer",),
        ci=True,
        groups=("secret",),
        validate=lambda m, t: _digit_ok(m, t) and _not_placeholder(m, t),
    ),
    _Detector(
        kind="password_in_url",
        # user may hold an unencoded "@" (an e-mail); it has no ":" (keeps it linear)
        pattern=r"://(?P<user>[^\s:/?#\"'<>\[\]]*):(?P<secret>[^\s/?#\"'<>]+)@(?=[^\s/?#@\"'<>])",
        prefilter=(r"://[^/: \t\r\n]*:[^/ \t\r\n]*@",),
        needles=("://",),
        groups=("secret",),
        validate=_url_password_ok,
    ),
    _Detector(
        kind="password_assignment",
        pattern=(
            rf"(?P<kw>(?i:{_KEYWORDS})){_KEY_SUFFIX}\\?[\"']?[ \t]*"
            rf"(?P<sep>=>|:=|==|=|:)[ \t]*{_ASSIGN_VALUE}"
        ),
        prefilter=_KEYWORD_PREFILTER,
        needles=("pass", "pwd", "secret", "token", "key"),
        ci=True,
        groups=("dq", "sq", "eq", "uq"),
        validate=_assignment_ok,
    ),
    _Detector(  # command-line flags: --password hunter2, --token "abc..."
        kind="password_assignment",
        pattern=(
            rf"(?<![A-Za-z0-9_-])--?[A-Za-z0-9_-]*?(?P<kw>(?i:{_KEYWORDS})){_KEY_SUFFIX}"
            rf"[ \t]+(?P<sep>){_ASSIGN_VALUE}"
        ),
        prefilter=_KEYWORD_PREFILTER,
        needles=("pass", "pwd", "secret", "token", "key"),
        ci=True,
        groups=("dq", "sq", "eq", "uq"),
        validate=_assignment_ok,
    ),
)


KINDS: tuple[str, ...] = tuple(dict.fromkeys(d.kind for d in _DETECTORS))
"""Every kind name that can appear in ``[REDACTED:<kind>]``, most specific first."""


def _build_prefilter(detectors: tuple[_Detector, ...]) -> str:
    """Union of the detectors' prefilter alternatives, grouped by first character.

    ``c(?:x|y)`` is equivalent to ``cx|cy``; grouping lets Python's ``re`` skip
    positions whose character starts no alternative (a charset prefix) and
    try one branch per candidate position.  Rust ``regex`` does not care.
    """
    groups: dict[str, list[str]] = {}
    for det in detectors:
        for alt in det.prefilter:
            first, rest = alt[0], alt[1:]
            if not (first.isascii() and (first.isalnum() or first in ":_-")):
                raise ValueError(f"prefilter alternative must start with a literal: {alt!r}")
            bucket = groups.setdefault(first, [])
            if rest not in bucket:
                bucket.append(rest)
    parts = []
    for first, rests in groups.items():
        if len(rests) == 1:
            parts.append(first + rests[0])
        else:
            parts.append(first + "(?:" + "|".join(rests) + ")")
    return "|".join(parts)


PREFILTER_PATTERN: str = _build_prefilter(_DETECTORS)
"""Superset filter shared by Python ``re`` and Rust ``regex`` (polars ``str.contains``)."""

_PREFILTER = re.compile(PREFILTER_PATTERN)
_COMPILED: tuple[tuple[_Detector, re.Pattern[str]], ...] = tuple(
    (d, re.compile(d.pattern, re.ASCII)) for d in _DETECTORS
)
_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}


def has_candidate(text: str) -> bool:
    """True when ``text`` might contain a secret (cheap: one compiled regex search)."""
    return _PREFILTER.search(text) is not None


def _find_spans(text: str) -> list[tuple[int, int, int]]:
    """All secret spans ``(start, end, priority)`` found by the detectors, unmerged."""
    spans: list[tuple[int, int, int]] = []
    lowered: str | None = None
    for det, rx in _COMPILED:
        if det.ci:
            if lowered is None:
                lowered = text.lower()
            hay = lowered
        else:
            hay = text
        if not any(n in hay for n in det.needles):
            continue
        if det.requires is not None:
            if lowered is None:
                lowered = text.lower()
            if det.requires not in lowered:
                continue
        prio = _PRIORITY[det.kind]
        for m in rx.finditer(text):
            if det.validate is not None and not det.validate(m, text):
                continue
            start, end = _secret_span(m, det.groups)
            if end > start:
                spans.append((start, end, prio))
    return spans


def _apply(text: str, spans: list[tuple[int, int, int]]) -> tuple[str, tuple[str, ...]]:
    if not spans:
        return text, ()
    spans.sort()
    merged: list[list[int]] = []
    for start, end, prio in spans:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], end)
            last[2] = min(last[2], prio)
        else:
            merged.append([start, end, prio])
    out: list[str] = []
    kinds: list[str] = []
    pos = 0
    for start, end, prio in merged:
        kind = KINDS[prio]
        out.append(text[pos:start])
        out.append(_MARKER_FMT.format(kind))
        kinds.append(kind)
        pos = end
    out.append(text[pos:])
    return "".join(out), tuple(kinds)


_MAX_PASSES = 8


def _redact_unfiltered(text: str) -> tuple[str, tuple[str, ...]]:
    """The detailed redactor without the prefilter gate (tests use it to check the superset property).

    Runs passes until nothing changes: removing a secret can expose a
    neighbour that was glued to it (``AKIA…`` directly followed by another
    token only has a word boundary once that token is a marker).  Markers are
    never consumed, so every changing pass adds one and the loop ends; the
    fixed point makes redaction idempotent.
    """
    out, kinds = _apply(text, _find_spans(text))
    if not kinds:
        return out, kinds
    all_kinds = list(kinds)
    for _ in range(_MAX_PASSES):
        if _PREFILTER.search(out) is None:
            break
        again, more = _apply(out, _find_spans(out))
        if not more:
            break
        out = again
        all_kinds.extend(more)
    return out, tuple(all_kinds)


def redact_text(text: str) -> tuple[str, tuple[str, ...]]:
    """Replace every credential in ``text`` by ``[REDACTED:<kind>]``.

    Returns the redacted text and the kinds found, in textual order (a kind
    repeats when it occurs several times; the rare secret only exposed once
    its neighbour was redacted is reported after the others).  Text without
    a candidate is returned as the very same object.
    """
    if _PREFILTER.search(text) is None:
        return text, ()
    return _redact_unfiltered(text)


# --------------------------------------------------------------------------
# Structured values
# --------------------------------------------------------------------------

_SENSITIVE_KEY_RE = re.compile(rf"[A-Za-z0-9_.-]*?(?P<kw>(?i:{_KEYWORDS})){_KEY_SUFFIX}", re.ASCII)


@lru_cache(maxsize=4096)
def _sensitive_keyword(key: str) -> str | None:
    """The credential keyword when a mapping key names a credential (``db_password`` -> ``password``)."""
    m = _SENSITIVE_KEY_RE.fullmatch(key)
    return m.group("kw") if m else None


def redact_value(value: object, *, skip_keys: frozenset[str] = frozenset()) -> tuple[object, tuple[str, ...]]:
    """Redact credentials in a nested structure of dicts, lists, tuples and strings.

    * strings are scanned with :func:`redact_text`;
    * a string stored under a key that names a credential (``password``,
      ``db_password``, ``api_key``, ``token``, ...) is replaced whole by
      ``[REDACTED:password_assignment]`` when it looks like a real value, even
      without any other context;
    * values under a key listed in ``skip_keys`` (ids, hashes) are not scanned;
    * dict keys are kept as they are; other leaves (numbers, bytes, None, ...)
      are returned untouched.

    The input is never mutated: dicts, lists and tuples are rebuilt (as plain
    ``dict``/``list``/``tuple``).  Returns the new value and the kinds found.
    """
    kinds: list[str] = []
    result = _redact_any(value, skip_keys, kinds)
    return result, tuple(kinds)


# Leaves returned as they are without a recursive call (the common case).
_PLAIN_LEAVES = frozenset({int, float, bool, type(None), bytes, complex})


def _redact_str(value: str, kinds: list[str]) -> str:
    if _PREFILTER.search(value) is None:  # inlined fast path of redact_text
        return value
    new, found = _redact_unfiltered(value)
    if found:
        kinds.extend(found)
    return new


def _redact_any(value: object, skip_keys: frozenset[str], kinds: list[str]) -> object:
    t = type(value)
    if t is str or isinstance(value, str):
        return _redact_str(value, kinds)  # type: ignore[arg-type]
    if t is dict or isinstance(value, dict):
        return _redact_dict(value, skip_keys, kinds)  # type: ignore[arg-type]
    if t is list or isinstance(value, list):
        return [v if type(v) in _PLAIN_LEAVES else _redact_any(v, skip_keys, kinds) for v in value]  # type: ignore[union-attr]
    if t is tuple or isinstance(value, tuple):
        return tuple(v if type(v) in _PLAIN_LEAVES else _redact_any(v, skip_keys, kinds) for v in value)  # type: ignore[union-attr]
    return value


def _redact_dict(value: dict, skip_keys: frozenset[str], kinds: list[str]) -> dict:
    out: dict[object, object] = {}
    for k, v in value.items():
        tv = type(v)
        if tv in _PLAIN_LEAVES:
            out[k] = v
        elif k in skip_keys:
            out[k] = _copy_containers(v)
        elif (tv is str or isinstance(v, str)) and type(k) is str and (keyword := _sensitive_keyword(k)) is not None:
            # the key names a credential: the value needs no context of its own
            new = _redact_str(v, kinds)
            if new is v and _assignment_value_ok(keyword, v, quoted=True):
                kinds.append("password_assignment")
                new = _MARKER_FMT.format("password_assignment")
            out[k] = new
        elif tv is str:
            out[k] = _redact_str(v, kinds)
        else:
            out[k] = _redact_any(v, skip_keys, kinds)
    return out


def _copy_containers(value: object) -> object:
    """Copy dict/list/tuple containers (not scanned) so the result never aliases the input."""
    if isinstance(value, dict):
        return {k: _copy_containers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_containers(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy_containers(v) for v in value)
    return value
