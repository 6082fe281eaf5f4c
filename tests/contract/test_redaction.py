"""Tests for collector.contract.redaction (secret scanner used at ingest).

Fake credentials are assembled at import time from a seeded generator so that
no credential-shaped literal lives in the repository (and no scanner flags it).
"""

from __future__ import annotations

import copy
import random
import re
import string

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.contract.redaction import (
    _COMPILED,
    KINDS,
    PREFILTER_PATTERN,
    _redact_unfiltered,
    has_candidate,
    redact_text,
    redact_value,
)

# --------------------------------------------------------------------------
# Fake credential shapes
# --------------------------------------------------------------------------

_rnd = random.Random(20240611)
ALNUM = string.ascii_letters + string.digits
B32 = string.ascii_uppercase + "234567"
B64 = ALNUM + "+/"
HEX = "0123456789abcdef"
URLSAFE = ALNUM + "-_"


def fake(n: int, alphabet: str = ALNUM) -> str:
    """n pseudo-random characters that contain an upper, a lower and a digit when the alphabet allows."""
    while True:
        s = "".join(_rnd.choice(alphabet) for _ in range(n))
        need = [cls for cls in (string.ascii_uppercase, string.ascii_lowercase, string.digits) if set(alphabet) & set(cls)]
        if all(any(c in cls for c in s) for cls in need):
            return s


def pem_body(lines: int = 6) -> str:
    return "\n".join(fake(64, B64) for _ in range(lines)) + "\n" + fake(20, ALNUM) + "=="


AWS_AKID = "AKIA" + fake(16, B32)
AWS_STS_AKID = "ASIA" + fake(16, B32)
AWS_SECRET = fake(40, B64)
GCP_API_KEY = "AIza" + fake(35, URLSAFE)
GCP_KEY_ID = fake(40, HEX)
GHP = "ghp_" + fake(36)
GHO = "gho_" + fake(36)
GHS = "ghs_" + fake(36)
GITHUB_PAT = "github_pat_" + fake(22) + "_" + fake(59)
GLPAT = "glpat-" + fake(20, URLSAFE)
SLACK_BOT = "xoxb-" + fake(12, string.digits) + "-" + fake(13, string.digits) + "-" + fake(24)
SLACK_USER = "xoxp-" + fake(12, string.digits) + "-" + fake(24)
SLACK_HOOK_PATH = "T" + fake(8, string.ascii_uppercase + string.digits) + "/B" + fake(10, string.ascii_uppercase + string.digits) + "/" + fake(24)
STRIPE_LIVE = "sk_" + "live_" + fake(24)
STRIPE_RESTRICTED = "rk_" + "live_" + fake(24)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}
    + "."
    + "eyJzdWIiOiJub3RlYm9vay1ib3QiLCJpYXQiOjE3MDAwMDAwMDB9"  # {"sub":"notebook-bot","iat":1700000000}
    + "."
    + fake(43, URLSAFE)
)
URL_PASSWORD = "S3cr3t" + fake(6) + "!"
PASSWORD = "Tr0ub4dor&" + fake(4)
API_KEY_VALUE = fake(32)
TOKEN_VALUE = fake(40)
AZURE_KEY = fake(86, B64) + "=="
BEARER = fake(48, URLSAFE + ".~")
BASIC = "ZXRsOn" + fake(18, ALNUM) + "=="
OPENAI = "sk-proj-" + fake(48, URLSAFE)
OPENAI_LEGACY = "sk-" + fake(48)
ANTHROPIC = "sk-ant-api03-" + fake(80, URLSAFE)
NPM = "npm_" + fake(36)
DATABRICKS = "dapi" + fake(32, HEX)
HF = "hf_" + fake(34, string.ascii_letters)
PYPI = "pypi-AgEIcHlwaS5vcmc" + fake(60, URLSAFE)
RSA_BODY = pem_body()
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\n" + RSA_BODY + "\n-----END RSA PRIVATE KEY-----"
OPENSSH_KEY_ESCAPED = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\\n"
    + RSA_BODY.replace("\n", "\\n")
    + "\\n-----END OPENSSH PRIVATE KEY-----"
)
TRUNCATED_KEY = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(fake(64, B64) for _ in range(3))
GCP_PEM_ESCAPED = "-----BEGIN PRIVATE KEY-----\\n" + RSA_BODY.replace("\n", "\\n") + "\\n-----END PRIVATE KEY-----\\n"
GCP_SA_JSON = (
    '{"type": "service_account", "project_id": "analytics-dev", '
    f'"private_key_id": "{GCP_KEY_ID}", "private_key": "{GCP_PEM_ESCAPED}", '
    '"client_email": "etl@analytics-dev.iam.gserviceaccount.com"}'
)

# --------------------------------------------------------------------------
# Positive table: (id, text, secrets that must disappear, kind, text that must survive)
# --------------------------------------------------------------------------

POSITIVES = [
    ("aws_access_key", f"boto3 error: key {AWS_AKID} is invalid in eu-west-1", [AWS_AKID], "aws_access_key", ["boto3 error: key ", " is invalid in eu-west-1"]),
    ("aws_access_key-asia-env", f"AWS_ACCESS_KEY_ID={AWS_STS_AKID}\nAWS_REGION=us-east-1", [AWS_STS_AKID], "aws_access_key", ["AWS_ACCESS_KEY_ID=", "\nAWS_REGION=us-east-1"]),
    ("aws_secret_key-ini", f"[default]\naws_secret_access_key = {AWS_SECRET}\nregion = eu", [AWS_SECRET], "aws_secret_key", ["[default]\naws_secret_access_key = ", "\nregion = eu"]),
    ("aws_secret_key-sts-json", f'{{"SecretAccessKey": "{AWS_SECRET}", "Expiration": "2024-01-01"}}', [AWS_SECRET], "aws_secret_key", ['"SecretAccessKey": "', '"Expiration": "2024-01-01"']),
    ("gcp_service_account_key", f"loaded credentials {GCP_SA_JSON}", [GCP_KEY_ID, RSA_BODY.replace("\n", "\\n")], "gcp_service_account_key", ['"type": "service_account"', "etl@analytics-dev.iam.gserviceaccount.com", '"private_key_id": "']),
    ("gcp_api_key", f"GET https://maps.googleapis.com/maps/api/geocode/json?key={GCP_API_KEY}&address=x -> 403", [GCP_API_KEY], "gcp_api_key", ["https://maps.googleapis.com/maps/api/geocode/json?key=", "&address=x -> 403"]),
    ("private_key-multiline", f"ValueError: could not parse key\n{PRIVATE_KEY}\nduring handling", [RSA_BODY, "BEGIN RSA PRIVATE KEY", "END RSA PRIVATE KEY"], "private_key", ["ValueError: could not parse key\n", "\nduring handling"]),
    ("private_key-escaped-newlines", f'{{"key": "{OPENSSH_KEY_ESCAPED}", "user": "deploy"}}', [RSA_BODY.replace("\n", "\\n")], "private_key", ['{"key": "', '", "user": "deploy"}']),
    ("private_key-truncated", f"KeyError while reading\n{TRUNCATED_KEY}\n  File \"auth.py\", line 3", [TRUNCATED_KEY.split("\n")[1]], "private_key", ["KeyError while reading\n", '\n  File "auth.py", line 3']),
    ("github_token-ghp", f"git clone failed: remote rejected token {GHP} (403)", [GHP], "github_token", ["git clone failed: remote rejected token ", " (403)"]),
    ("github_token-gho", f"oauth={GHO};", [GHO], "github_token", ["oauth=", ";"]),
    ("github_token-ghs", f"using installation token {GHS} for org", [GHS], "github_token", ["using installation token ", " for org"]),
    ("github_token-pat", f"GH_TOKEN {GITHUB_PAT} expired", [GITHUB_PAT], "github_token", ["GH_TOKEN ", " expired"]),
    ("gitlab_token", f"gitlab auth with {GLPAT} failed", [GLPAT], "gitlab_token", ["gitlab auth with ", " failed"]),
    ("slack_token-bot", f"slack_sdk.errors.SlackApiError: invalid_auth for {SLACK_BOT}", [SLACK_BOT], "slack_token", ["slack_sdk.errors.SlackApiError: invalid_auth for "]),
    ("slack_token-user", f"client = WebClient({SLACK_USER!r})", [SLACK_USER], "slack_token", ["client = WebClient('", "')"]),
    ("slack_webhook", f"POST https://hooks.slack.com/services/{SLACK_HOOK_PATH} returned 404", [SLACK_HOOK_PATH], "slack_webhook", ["POST https://hooks.slack.com/services/", " returned 404"]),
    ("stripe_key-live", f"stripe.api_key set to {STRIPE_LIVE} in cell 3", [STRIPE_LIVE], "stripe_key", ["stripe.api_key set to ", " in cell 3"]),
    ("stripe_key-restricted", f"key={STRIPE_RESTRICTED}", [STRIPE_RESTRICTED], "stripe_key", ["key="]),
    ("jwt", f"401 for id_token {JWT} at /api", [JWT, JWT.split(".")[2]], "jwt", ["401 for id_token ", " at /api"]),
    ("password_in_url", f"OperationalError: could not connect to postgresql://etl_user:{URL_PASSWORD}@db.internal:5432/warehouse", [URL_PASSWORD], "password_in_url", ["postgresql://etl_user:", "@db.internal:5432/warehouse", "OperationalError"]),
    ("password_in_url-redis-no-user", f"redis://:{URL_PASSWORD}@cache:6379/0 unreachable", [URL_PASSWORD], "password_in_url", ["redis://:", "@cache:6379/0 unreachable"]),
    ("password_assignment-kv", f"connect(host=db, password={PASSWORD}) failed", [PASSWORD], "password_assignment", ["connect(host=db, password=", ") failed"]),
    ("password_assignment-json", f'{{"user": "etl", "password": "{PASSWORD}", "port": 5432}}', [PASSWORD], "password_assignment", ['{"user": "etl", "password": "', '", "port": 5432}']),
    ("password_assignment-yaml", f"db:\n  user: etl\n  passwd: {PASSWORD}\n  port: 5432\n", [PASSWORD], "password_assignment", ["db:\n  user: etl\n  passwd: ", "\n  port: 5432\n"]),
    ("password_assignment-pwd-env", f"export PGPWD={PASSWORD}\n", [PASSWORD], "password_assignment", ["export PGPWD=", "\n"]),
    ("password_assignment-secret", f"client_secret='{PASSWORD}'", [PASSWORD], "password_assignment", ["client_secret='", "'"]),
    ("password_assignment-api_key", f"api_key = \"{API_KEY_VALUE}\"  # prod", [API_KEY_VALUE], "password_assignment", ['api_key = "', '"  # prod']),
    ("password_assignment-token-query", f"GET /api/contents?token={TOKEN_VALUE}&type=notebook 403", [TOKEN_VALUE], "password_assignment", ["GET /api/contents?token=", "&type=notebook 403"]),
    ("password_assignment-header", f"X-Api-Key: {API_KEY_VALUE}\r\nAccept: */*", [API_KEY_VALUE], "password_assignment", ["X-Api-Key: ", "\r\nAccept: */*"]),
    ("password_assignment-cli", f"psql --password {PASSWORD} --host db", [PASSWORD], "password_assignment", ["psql --password ", " --host db"]),
    ("azure_storage_key", f"DefaultEndpointsProtocol=https;AccountName=nbstore;AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net", [AZURE_KEY], "azure_storage_key", ["AccountName=nbstore;AccountKey=", ";EndpointSuffix=core.windows.net"]),
    ("bearer_token-header", f"headers={{'Authorization': 'Bearer {BEARER}'}}", [BEARER], "bearer_token", ["headers={'Authorization': 'Bearer ", "'}"]),
    ("bearer_token-curl", f"curl -H \"Authorization: Bearer {BEARER}\" https://api.example.com", [BEARER], "bearer_token", ['curl -H "Authorization: Bearer ', '" https://api.example.com']),
    ("bearer_token-bare", f"refresh failed for Bearer {BEARER}; retrying", [BEARER], "bearer_token", ["refresh failed for Bearer ", "; retrying"]),
    ("basic_auth", f"Authorization: Basic {BASIC}\nHost: x", [BASIC], "basic_auth", ["Authorization: Basic ", "\nHost: x"]),
    ("openai_key-proj", f"openai.AuthenticationError: Incorrect API key provided: {OPENAI}.", [OPENAI], "openai_key", ["openai.AuthenticationError: Incorrect API key provided: "]),
    ("openai_key-legacy", f"OPENAI_API_KEY {OPENAI_LEGACY}", [OPENAI_LEGACY], "openai_key", ["OPENAI_API_KEY "]),
    ("anthropic_key", f"client = Anthropic(api_key=os.environ.get('K', '{ANTHROPIC}'))", [ANTHROPIC], "anthropic_key", ["client = Anthropic(api_key=os.environ.get('K', '", "'))"]),
    ("npm_token", f"//registry.npmjs.org/:_authToken {NPM}", [NPM], "npm_token", ["//registry.npmjs.org/:_authToken "]),
    ("databricks_token", f"databricks configure: host=https://adb-1.azuredatabricks.net token {DATABRICKS} rejected", [DATABRICKS], "databricks_token", ["host=https://adb-1.azuredatabricks.net token ", " rejected"]),
    ("huggingface_token", f"login(token) with {HF} -> 401", [HF], "huggingface_token", ["login(token) with ", " -> 401"]),
    ("pypi_token", f"twine upload -u __token__ -p {PYPI}", [PYPI], "pypi_token", ["twine upload -u __token__ -p "]),
]

# --------------------------------------------------------------------------
# Negative table: look-alikes that must be left alone
# --------------------------------------------------------------------------

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
GIT_SHA = "3f786850e387550fdab836ed7e6dc881de23001b"
NEGATIVES = [
    ("sha256-output-hash", f"output_hash=sha256:{SHA256}"),
    ("sha256-json", f'{{"output_hash": "{SHA256}", "input_hash": "{SHA256[::-1]}"}}'),
    ("uuid", "run_id=123e4567-e89b-12d3-a456-426614174000 kernel_id 9b2f1c3e-8d4a-4e5f-a6b7-c8d9e0f1a2b3"),
    ("git-sha", f"checked out commit {GIT_SHA} (HEAD -> main)"),
    ("md5", "etag d41d8cd98f00b204e9800998ecf8427e"),
    ("akia-prose", "AKIA is the prefix of long-term AWS access key ids; ASIA marks temporary ones"),
    ("akia-too-long", "AKIAIOSFODNN7EXAMPLEANDMORE is not a key id"),
    ("password-word-only", 'FATAL: password authentication failed for user "etl"'),
    ("password-prompt", "Please enter your password:"),
    ("password-colon-prose", "ValueError: invalid password: must contain a digit"),
    ("password-stars", "password=***"),
    ("password-angle-placeholder", "password=<redacted>"),
    ("password-env-placeholder", "password=${PASSWORD}"),
    ("password-shell-var", 'PGPASSWORD="$DB_PASSWORD" psql -h db'),
    ("password-template", 'password: "{{ vault_db_password }}"'),
    ("password-percent-format", "dsn = 'password=%(password)s host=%(host)s'"),
    ("password-null-json", '{"user": "etl", "password": null, "token": ""}'),
    ("password-getpass", "password = getpass.getpass('Password: ')"),
    ("password-environ", 'password = os.environ["DB_PASSWORD"]'),
    ("password-attribute", "engine = create_engine(url, password=settings.db_password)"),
    ("password-variable-call", "conn = psycopg2.connect(host=host, password=pw)"),
    ("password-redacted-marker", "password=[REDACTED:password_assignment]"),
    ("redacted-marker-aws", "[REDACTED:aws_access_key]"),
    ("redacted-marker-url", "postgresql://etl_user:[REDACTED:password_in_url]@db.internal:5432/warehouse"),
    ("base64-text", "payload aGVsbG8gd29ybGQsIHRoaXMgaXMgbm90IGEgc2VjcmV0Lg== decoded fine"),
    ("base64-json-no-dots", "eyJjZWxsIjogMywgInN0YXR1cyI6ICJvayJ9"),
    ("file-path", "FileNotFoundError: /home/jovyan/work/secrets/token.json and ./passwords/README.md"),
    ("pwd-env", "PWD=/home/jovyan/notebooks\nHOME=/home/jovyan"),
    ("url-without-credentials", "HTTPSConnectionPool(host='api.example.com', port=8443): https://api.example.com:8443/v1/runs?page=2"),
    ("url-user-no-password", "git fetch https://deploy@git.example.com/org/repo.git"),
    ("scp-style-git", "ssh git@github.com:org/repo.git && ssh://git@github.com:22/org/repo.git"),
    ("email-and-at", "contact data-team@example.com, on-call: sre@example.com"),
    ("version-strings", "numpy==1.26.4 pandas 2.2.1 python 3.11.7 duckdb>=1.1"),
    ("tokenizer-code", "tokenizer.pad_token = tokenizer.eos_token; max_tokens=4096; num_tokens: 512"),
    ("special-token-literal", 'unk_token="<|endoftext|>" pad_token="[PAD]"'),
    ("token-prose", "SyntaxError: unexpected token: '}' and token: expired"),
    ("secret-name", "secret_name=prod-db-creds secret: not found"),
    ("secret-path", "secret: /var/run/secrets/kubernetes.io/serviceaccount/token"),
    ("sklearn", "sk-learn-pipeline-for-text-classification-v2"),
    ("short-prefixes", "github tokens look like ghp_xxx, Slack bots use xoxb-, GitLab glpat-"),
    ("bearer-placeholder", "Authorization: Bearer $TOKEN and Authorization: Bearer <token>"),
    ("bearer-prose", "Bearer authentication is required for this endpoint"),
    ("public-key", "-----BEGIN PUBLIC KEY-----\n" + "\n".join(fake(64, B64) for _ in range(3)) + "\n-----END PUBLIC KEY-----"),
    ("gcp-sa-without-key", '{"type": "service_account", "client_email": "etl@p.iam.gserviceaccount.com"}'),
    ("azure-placeholder", "AccountName=nbstore;AccountKey=<your-key>;EndpointSuffix=core.windows.net"),
    ("hf-identifier", "hf_hub_download(repo_id='bert-base-uncased', filename='config.json')"),
    ("dapi-word", "the dapi endpoint and dapi_version=3"),
    ("api-key-env-name", "api_key=OPENAI_API_KEY token=GITHUB_TOKEN"),
]

assert len({row[0] for row in POSITIVES}) == len(POSITIVES)
assert len({row[0] for row in NEGATIVES}) == len(NEGATIVES)


def test_tables_cover_enough_kinds() -> None:
    kinds = {row[3] for row in POSITIVES}
    assert len(kinds) >= 12
    assert kinds == set(KINDS), set(KINDS) ^ kinds  # every kind has at least one row
    assert len(NEGATIVES) >= len(POSITIVES)


@pytest.mark.parametrize(("text", "secrets", "kind", "keep"), [pytest.param(*row[1:], id=row[0]) for row in POSITIVES])
def test_positive(text: str, secrets: list[str], kind: str, keep: list[str]) -> None:
    out, kinds = redact_text(text)
    for secret in secrets:
        assert secret in text  # the table is consistent
        assert secret not in out
    assert f"[REDACTED:{kind}]" in out
    assert kind in kinds
    for part in keep:
        assert part in out
    assert has_candidate(text)


@pytest.mark.parametrize("text", [pytest.param(row[1], id=row[0]) for row in NEGATIVES])
def test_negative(text: str) -> None:
    out, kinds = redact_text(text)
    assert out == text
    assert kinds == ()
    assert _redact_unfiltered(text) == (text, ())


@pytest.mark.parametrize("text", [pytest.param(row[1], id=row[0]) for row in POSITIVES + NEGATIVES])
def test_idempotent(text: str) -> None:
    once, _ = redact_text(text)
    twice, kinds = redact_text(once)
    assert twice == once
    assert kinds == ()


def test_clean_text_is_returned_as_is() -> None:
    text = "ZeroDivisionError: division by zero"
    out, kinds = redact_text(text)
    assert out is text
    assert kinds == ()
    assert not has_candidate(text)


def test_kinds_reported_in_textual_order_and_repeat() -> None:
    text = f"a {GHP} b {AWS_AKID} c {GHO} d password={PASSWORD}"
    out, kinds = redact_text(text)
    assert kinds == ("github_token", "aws_access_key", "github_token", "password_assignment")
    assert out == (
        "a [REDACTED:github_token] b [REDACTED:aws_access_key] c [REDACTED:github_token] "
        "d password=[REDACTED:password_assignment]"
    )


def test_overlapping_detectors_redact_once_with_most_specific_kind() -> None:
    # a GitHub token used as the password of a URL and as the value of token=
    text = f"https://bot:{GHP}@github.com/org/repo.git token={GHP}"
    out, kinds = redact_text(text)
    assert out == "https://bot:[REDACTED:github_token]@github.com/org/repo.git token=[REDACTED:github_token]"
    assert kinds == ("github_token", "github_token")
    # a JWT in an Authorization header
    out, kinds = redact_text(f"Authorization: Bearer {JWT}")
    assert out == "Authorization: Bearer [REDACTED:jwt]"
    assert kinds == ("jwt",)


def test_multiline_traceback_keeps_other_lines() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "/home/jovyan/work/load.py", line 12, in <module>',
        f'    engine = create_engine("postgresql://etl:{URL_PASSWORD}@db.internal/warehouse")',
        '  File "/opt/conda/lib/python3.11/site-packages/sqlalchemy/engine/create.py", line 88, in create_engine',
        "    raise exc",
        f"sqlalchemy.exc.OperationalError: password={PASSWORD} rejected for user etl",
        PRIVATE_KEY,
        "During handling of the above exception, another exception occurred:",
    ]
    text = "\n".join(lines)
    out, kinds = redact_text(text)
    out_lines = out.split("\n")
    assert len(out_lines) == len(lines)  # the multi-line PEM block collapsed into one marker line
    assert out_lines[0] == lines[0]
    assert out_lines[1] == lines[1]
    assert out_lines[2] == '    engine = create_engine("postgresql://etl:[REDACTED:password_in_url]@db.internal/warehouse")'
    assert out_lines[3] == lines[3]
    assert out_lines[4] == lines[4]
    assert out_lines[5] == "sqlalchemy.exc.OperationalError: password=[REDACTED:password_assignment] rejected for user etl"
    assert out_lines[6] == "[REDACTED:private_key]"
    assert out_lines[7] == lines[7]
    assert kinds == ("password_in_url", "password_assignment", "private_key")
    with pytest.raises(ValueError):
        out.index(URL_PASSWORD)
    # the same text with a Windows line ending and a trailing line survives too
    out_crlf, _ = redact_text(text.replace("\n", "\r\n") + "\r\nEND")
    assert out_crlf.endswith("[REDACTED:private_key]\r\nDuring handling of the above exception, another exception occurred:\r\nEND")


# --------------------------------------------------------------------------
# redact_value
# --------------------------------------------------------------------------


def _event() -> dict:
    return {
        "specversion": "1.0",
        "id": "evt-1",
        "type": "notebook.run.failed",
        "data": {
            "run_id": "r-123",
            "attempt": 2,
            "duration_seconds": 12.5,
            "error_message": f"could not connect to postgresql://etl:{URL_PASSWORD}@db/warehouse",
            "output_hash": SHA256,
            "debug_blob": f"kept verbatim {GHP}",  # skipped key: never scanned
            "parameters": {
                "db_password": "hunter22",  # no context in the value: the key is the context
                "api_key": "None",  # placeholder stays
                "rows": 1000,
                "tokenizer": "bert-base-uncased",
                "nested": [{"msg": f"token {GHO}", "ok": True}, (f"{AWS_AKID}", None, 3)],
            },
            "cells": [{"index": 0, "status": "ok"}, {"index": 1, "status": "error", "traceback": PRIVATE_KEY}],
            "tags": {"team": "growth"},
        },
    }


SKIP = frozenset({"id", "run_id", "output_hash", "debug_blob"})


def test_redact_value_nested() -> None:
    event = _event()
    out, kinds = redact_value(event, skip_keys=SKIP)
    data = out["data"]
    assert data["error_message"] == "could not connect to postgresql://etl:[REDACTED:password_in_url]@db/warehouse"
    assert data["output_hash"] == SHA256
    assert data["debug_blob"] == f"kept verbatim {GHP}"
    params = data["parameters"]
    assert params["db_password"] == "[REDACTED:password_assignment]"
    assert params["api_key"] == "None"
    assert params["rows"] == 1000
    assert params["tokenizer"] == "bert-base-uncased"
    assert params["nested"][0] == {"msg": "token [REDACTED:github_token]", "ok": True}
    assert params["nested"][1] == ("[REDACTED:aws_access_key]", None, 3)
    assert isinstance(params["nested"][1], tuple)
    assert data["cells"][1]["traceback"] == "[REDACTED:private_key]"
    assert data["cells"][0] == {"index": 0, "status": "ok"}
    assert data["tags"] == {"team": "growth"}
    assert out["type"] == "notebook.run.failed"
    assert sorted(kinds) == sorted(
        ["password_in_url", "password_assignment", "github_token", "aws_access_key", "private_key"]
    )


def test_redact_value_without_skip_keys_scans_everything() -> None:
    _, kinds = redact_value({"debug_blob": f"x {GHP}"})
    assert kinds == ("github_token",)


def test_redact_value_does_not_mutate_input() -> None:
    event = _event()
    snapshot = copy.deepcopy(event)
    out, _ = redact_value(event, skip_keys=SKIP)
    assert event == snapshot
    assert out is not event
    assert out["data"] is not event["data"]
    assert out["data"]["cells"] is not event["data"]["cells"]
    # skipped containers are copied too, so mutating the result cannot reach the input
    src = {"skip": {"inner": [1, 2]}}
    res, _ = redact_value(src, skip_keys=frozenset({"skip"}))
    res["skip"]["inner"].append(3)
    assert src == {"skip": {"inner": [1, 2]}}


@pytest.mark.parametrize(
    "value",
    [42, 3.5, None, True, b"password=hunter22", "plain text", [], {}, ()],
    ids=["int", "float", "none", "bool", "bytes", "str", "list", "dict", "tuple"],
)
def test_redact_value_leaves(value: object) -> None:
    out, kinds = redact_value(value)
    assert out == value
    assert kinds == ()


# --------------------------------------------------------------------------
# Prefilter: a superset of what the redactor changes, in Python and in polars
# --------------------------------------------------------------------------


def _polars_contains(texts: list[str]) -> list[bool]:
    return pl.Series(texts, dtype=pl.String).str.contains(PREFILTER_PATTERN).to_list()


def test_prefilter_has_no_python_only_syntax() -> None:
    for forbidden in ("(?=", "(?!", "(?<=", "(?<!", "(?P=", "\\s", "\\w", "\\d", "\\b"):
        assert forbidden not in PREFILTER_PATTERN
    assert not re.search(r"\\[1-9]", PREFILTER_PATTERN)  # no back-references
    re.compile(PREFILTER_PATTERN)


def test_prefilter_compiles_in_polars_and_agrees_on_tables() -> None:
    rows = [row[1] for row in POSITIVES] + [row[1] for row in NEGATIVES]
    rust = _polars_contains(rows)
    for text, in_rust in zip(rows, rust):
        changed = _redact_unfiltered(text)[0] != text
        assert in_rust == has_candidate(text), text
        if changed:
            assert in_rust and has_candidate(text), text
    assert all(rust[: len(POSITIVES)])


def _assert_detector_matches_hit_own_prefilter(text: str) -> None:
    """Every validated match of every detector contains one of that detector's prefilter alternatives."""
    for det, rx in _COMPILED:
        own = re.compile("|".join(det.prefilter))
        for m in rx.finditer(text):
            if det.validate is None or det.validate(m, text):
                assert own.search(m.group(0)), (det.kind, m.group(0))


@pytest.mark.parametrize("text", [pytest.param(row[1], id=row[0]) for row in POSITIVES + NEGATIVES])
def test_each_detector_implies_its_prefilter(text: str) -> None:
    _assert_detector_matches_hit_own_prefilter(text)


_FRAGMENTS = [
    # credentials and their pieces
    AWS_AKID, AWS_AKID[:10], "AKIA", "ASIA", AWS_SECRET, GCP_API_KEY, GCP_KEY_ID, GHP, GITHUB_PAT, GLPAT, SLACK_BOT,
    "hooks.slack.com/services/", SLACK_HOOK_PATH, STRIPE_LIVE, JWT, JWT[:40], OPENAI, ANTHROPIC, NPM, DATABRICKS, HF, PYPI,
    AZURE_KEY, BEARER, BASIC, PASSWORD, URL_PASSWORD, TOKEN_VALUE, "hunter22", "p4ss", GCP_SA_JSON,
    # structure
    "-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----", "-----END PRIVATE KEY-----", RSA_BODY, fake(64, B64),
    "\n", "\\n", "\r\n", " ", "\t", "=", ":", ": ", " = ", '"', "'", "\\\"", "@", "://", "/", "?", "&", ",", ";", "(", ")",
    "[", "]", "{", "}", "<", ">", "$", "*", "#", "-", "--", "_", ".",
    # keys and context words
    "password", "Password", "PASSWORD", "passwd", "pwd", "PWD", "secret", "client_secret", "token", "Token", "api_key",
    "X-Api-Key", "apiKey", "access_key", "aws_secret_access_key", "SecretAccessKey", "AccountKey", "SharedAccessKey",
    "Authorization", "authorization", "Bearer", "bearer", "Basic", "private_key", "private_key_id", '"type": "service_account"',
    "postgresql", "redis", "https", "user", "etl", "db.internal", "sk-", "sk_live_", "xoxb-", "ghp_", "eyJ", "hf_", "dapi",
    # look-alikes
    SHA256, GIT_SHA, "[REDACTED:aws_access_key]", "[REDACTED:password_assignment]", "${PASSWORD}", "<redacted>", "***",
    "None", "null", "getpass()", "os.environ", "tokenizer", "max_tokens",
]

_text_strategy = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=6)),
    max_size=12,
).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_text_strategy)
@example(f"postgresql://etl:{URL_PASSWORD}@db.internal")
@example("password=hunter22")
@example("PaSsWoRd: s3cr3t!")
def test_prefilter_is_a_superset(text: str) -> None:
    _assert_detector_matches_hit_own_prefilter(text)
    changed = _redact_unfiltered(text)[0] != text
    if changed:
        assert has_candidate(text)
        assert _polars_contains([text]) == [True]
    # the gated public function agrees with the ungated redactor
    assert redact_text(text) == _redact_unfiltered(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_text_strategy)
def test_idempotent_property(text: str) -> None:
    once, _ = redact_text(text)
    assert redact_text(once) == (once, ())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_and_prefilter_holds(text: str) -> None:
    out, kinds = _redact_unfiltered(text)
    if out != text:
        assert has_candidate(text)
    assert all(k in KINDS for k in kinds)
    assert out.count("[REDACTED:") - text.count("[REDACTED:") == len(kinds)


def test_long_inputs_stay_linear() -> None:
    # no catastrophic backtracking on long runs of candidate characters: a backtracking pattern would hang here
    # (pytest-timeout ends the test); the speed itself is a figure of bench/bench_redaction.py, not an assertion
    blobs = [
        "A" * 200_000,
        "-" * 200_000,
        "password=" + "a" * 200_000,
        "https://" + "a:" * 50_000 + "b",
        "-----BEGIN PRIVATE KEY-----\n" + "A" * 200_000,
        "eyJ" + "a" * 100_000 + "." + "b" * 100_000,
        "token " * 30_000,
    ]
    for blob in blobs:
        out, _ = redact_text(blob)
        assert len(out) <= len(blob) + 64, blob[:30]


# Issue 13: any BEGIN … PRIVATE KEY block is a secret whatever its length, complete or truncated, with real or
# JSON-escaped line breaks (a prose mention of the header is redacted too: the cost of never missing a short key).
@pytest.mark.parametrize("text, kept", [
    ("the file must start with -----BEGIN PRIVATE KEY----- and end with -----END PRIVATE KEY-----",
     "the file must start with "),
    ('{"key": "-----BEGIN RSA PRIVATE KEY-----\\nMIIEow"}', '{"key": "'),
    ('{"key": "-----BEGIN OPENSSH PRIVATE KEY-----\\r\\nb3BlbnNz\\r\\nAAAA", "n": 1}', '", "n": 1}'),
    ("x -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n  at line 3", "\n  at line 3"),
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----", ""),
])
def test_any_private_key_block_is_redacted(text: str, kept: str) -> None:
    out, kinds = redact_text(text)
    assert "private_key" in kinds and "PRIVATE KEY" not in out
    assert kept in out
    for line in ("MIIEow", "b3BlbnNz", "MHcCAQEEI"):
        assert line not in out
    assert redact_text(out) == (out, ())
