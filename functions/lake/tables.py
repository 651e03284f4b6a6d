"""Where the lake's Delta tables live, one per domain, and the storage options to reach them on the S3 store.

The table names are the original project's: `transactions` (tfd), `trips` (eta), `customer_interactions` (ecci),
each at `s3://<bucket>/<table>` in the `delta-lake` bucket (COELHO_LAKE_BUCKET). The S3 store is the one every
function reaches: S3_ENDPOINT_URL and the AWS_* keys of the environment.

    >>> TABLES["transactions"], table_uri("trips", bucket="delta-lake")
    ('tfd', 's3://delta-lake/trips')
    >>> storage_options({"S3_ENDPOINT_URL": "http://127.0.0.1:18333", "AWS_ACCESS_KEY_ID": "k",
    ...                  "AWS_SECRET_ACCESS_KEY": "s"})["AWS_ALLOW_HTTP"]
    'true'
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# table -> domain name; the domain's `lake_table` names it on the other side
TABLES: dict[str, str] = {"transactions": "tfd", "trips": "eta", "customer_interactions": "ecci"}
DEFAULT_BUCKET = "delta-lake"
RAW_BUCKET = "raw-data"


def table_for(domain_name: str) -> str:
    """The lake table of a domain.

    >>> table_for("ecci")
    'customer_interactions'
    """
    for table, domain in TABLES.items():
        if domain == domain_name:
            return table
    raise ValueError(f"no lake table for domain {domain_name!r}: {', '.join(TABLES.values())}")


def table_uri(table: str, bucket: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """`s3://<bucket>/<table>`; the bucket is COELHO_LAKE_BUCKET or `delta-lake`."""
    if table not in TABLES:
        raise ValueError(f"unknown lake table {table!r}: {', '.join(TABLES)}")
    env = os.environ if environ is None else environ
    return f"s3://{bucket or env.get('COELHO_LAKE_BUCKET', DEFAULT_BUCKET)}/{table}"


def storage_options(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """delta-rs storage options for the platform's S3 store (plain http allowed for the embedded one).

    Concurrent writers are safe through conditional puts (`aws_conditional_put=etag`), which the S3 server supports.
    """
    env = os.environ if environ is None else environ
    endpoint = env.get("S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL", "")
    options = {
        "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", ""),
        "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", ""),
        "AWS_REGION": env.get("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1")),
        "aws_conditional_put": "etag",
    }
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return options
