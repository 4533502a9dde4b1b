"""Pydantic models of the check's request and reply: what ``/docs`` and ``/openapi.json``
show. The request's fields are made from the contract tables (:data:`linkage.ingest.read.SPECS`,
the same columns ingest reads), so the schema cannot drift from the input format. Requests are
checked by :class:`linkage.serve.keys.KeyMaker`, not by these models (see
:mod:`linkage.serve.app`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from linkage.serve.keys import REQUEST_TABLES, is_required, request_columns

__all__ = ["CheckReply", "CheckRequest", "Link", "Problem", "Shared", "request_schema"]


def _row_model(table: str, name: str) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for column in request_columns(table):
        if is_required(table, column):
            fields[column.name] = (str, Field(description=f"{table}.{column.name}"))
        else:
            fields[column.name] = (str | None, Field(None, description=f"{table}.{column.name}"))
    return create_model(name, __config__=ConfigDict(extra="allow"), **fields)


Account = _row_model("accounts", "Account")
_ROWS = {table: _row_model(table, "".join(w.title() for w in table.split("_")).rstrip("s"))
         for table in REQUEST_TABLES}

_FIELDS: dict[str, Any] = {
    "account": (Account, Field(description="The account, with the columns of `accounts`.")),
    **{table: (list[model] | None, Field(None, description=f"Rows of `{table}`."))  # type: ignore[valid-type]
       for table, model in _ROWS.items()},
}
CheckRequest: type[BaseModel] = create_model(
    "CheckRequest", __config__=ConfigDict(extra="allow"), **_FIELDS)


class Shared(BaseModel):
    signal: str = Field(description="`card`, `device`, `email`, `ip_net`, `obs:KIND` …")
    members: int = Field(description="The most members of the cluster that carry one of the "
                         "shared keys of this signal.")
    keys: int = Field(description="How many keys of this signal the account shares with the "
                      "cluster.")


class Link(BaseModel):
    cluster_id: str
    cluster_score: float = Field(ge=0, le=1)
    flagged: bool
    evidence: float = Field(ge=0, le=1, description="How strongly the shared keys tie the "
                            "account to the cluster (noisy-OR of their evidence).")
    shared: list[Shared]


class CheckReply(BaseModel):
    run_id: int
    risk: float = Field(ge=0, le=1, description="Estimated chance that the account belongs to "
                        "a flagged cluster (0.5 or more: more likely a member than not).")
    links: list[Link] = Field(description="Linked clusters, strongest first.")


class Problem(BaseModel):
    error: str
    field: str | None = Field(None, description="The offending field, e.g. "
                              "`payment_instruments.0.fingerprint`.")
    detail: str | None = None


def request_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's JSON schema, with references to ``#/components/schemas``, and the
    definitions it refers to."""
    schema = CheckRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    return schema, schema.pop("$defs", {})
