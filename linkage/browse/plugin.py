"""The Datasette plugin of ``linkage browse``: cluster and campaign pages, and links to them.

Routes (``DB`` is Datasette's name of the database, ``RUN`` a run id or ``latest``)::

    /-/linkage/DB/runs/RUN/clusters/CLUSTER_ID   the cluster's page (as in linkage report)
    /-/linkage/DB/runs/RUN/campaigns/CAMPAIGN_ID the campaign's page (a campaign of one
                                                 cluster redirects to that cluster's page)
    /-/linkage/DB/runs/RUN/glossary              the glossary

Every ``cluster_id``, ``other_cluster_id`` and ``campaign_id`` cell of a table, view or
query result links to its page, in the row's run (``run_id`` of the row, else the latest).
The pages are :mod:`linkage.reports.html`'s, rendered from the same file Datasette reads;
their text is escaped by the same autoescaping templates, and link addresses are
percent-encoded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from datasette import hookimpl
from datasette.utils.asgi import Response
from markupsafe import Markup, escape

from linkage.errors import LinkageError
from linkage.store import Store

__all__ = ["register_routes", "render_cell"]

_PREFIX = "/-/linkage"
_LINKED = {"cluster_id": "clusters", "other_cluster_id": "clusters",
           "parent_cluster_id": "clusters", "campaign_id": "campaigns"}


def _q(value: object) -> str:
    return quote(str(value), safe="")


def page_path(datasette: Any, database: str, run: object, kind: str, ident: str) -> str:
    """The address of a page of the plugin (``kind``: clusters, campaigns)."""
    return str(datasette.urls.path(
        f"{_PREFIX}/{_q(database)}/runs/{_q(run)}/{kind}/{_q(ident)}"))


@hookimpl
def render_cell(row: Any, value: Any, column: str, database: str, datasette: Any) -> Any:
    """A cluster or campaign id as a link to its page; anything else as Datasette shows it."""
    if column not in _LINKED or not isinstance(value, str) or not value:
        return None
    try:
        keys = row.keys()
    except AttributeError:
        keys = ()
    run = row["run_id"] if "run_id" in keys else None
    if isinstance(run, dict):  # a table page expands the foreign key to {value, label}
        run = run.get("value")
    if not isinstance(run, int):
        run = "latest"
    href = page_path(datasette, database, run, _LINKED[column], value)
    # Markup is safe here: the address is percent-encoded, the text escaped.
    return Markup(  # noqa: S704
        f'<a href="{escape(href)}" title="linkage page">{escape(value)}</a>')


def _render(path: str, run: str, fn: Callable[[Store, int], str]) -> str:
    with Store(f"sqlite:///{path}") as store:
        return fn(store, store.resolve_run(run))


async def _page(datasette: Any, request: Any, kind: str) -> Response:
    from linkage.reports import html, queries

    name, run = request.url_vars["database"], request.url_vars["run"]
    ident = request.url_vars.get("ident", "")
    try:
        db = datasette.get_database(name)
    except KeyError:
        return Response.text(f"no such database: {name}", status=404)

    def cluster_href(cluster_id: str) -> str:
        return page_path(datasette, name, run, "clusters", cluster_id)

    def campaign_href(campaign_id: str) -> str:
        return page_path(datasette, name, run, "campaigns", campaign_id)

    glossary = str(datasette.urls.path(f"{_PREFIX}/{_q(name)}/runs/{_q(run)}/glossary"))
    home = str(datasette.urls.database(name))

    def draw(store: Store, run_id: int) -> str:
        if kind == "glossary":
            return html.render_glossary(store, run_id, home=home)
        if kind == "campaigns":
            try:
                return html.render_campaign(store, run_id, ident, cluster_href=cluster_href,
                                            glossary_href=glossary, home=home)
            except LinkageError:
                # A campaign of one cluster is that cluster (it is named by it).
                queries.cluster_summary(store, run_id, ident)
                raise _Redirect(cluster_href(ident)) from None
        return html.render_cluster(store, run_id, ident, cluster_href=cluster_href,
                                   campaign_href=campaign_href, glossary_href=glossary,
                                   home=home)

    try:
        text = await asyncio.to_thread(_render, db.path, run, draw)
    except _Redirect as go:
        return Response.redirect(go.to)
    except LinkageError as exc:
        return Response.text(str(exc), status=404)
    return Response.html(text)


class _Redirect(Exception):
    def __init__(self, to: str) -> None:
        super().__init__(to)
        self.to = to


async def cluster_page(datasette: Any, request: Any) -> Response:
    """A cluster's page."""
    return await _page(datasette, request, "clusters")


async def campaign_page(datasette: Any, request: Any) -> Response:
    """A campaign's page."""
    return await _page(datasette, request, "campaigns")


async def glossary_page(datasette: Any, request: Any) -> Response:
    """The glossary."""
    return await _page(datasette, request, "glossary")


@hookimpl
def register_routes() -> list[tuple[str, Any]]:
    """The plugin's pages."""
    base = r"^/-/linkage/(?P<database>[^/]+)/runs/(?P<run>latest|\d+)"
    return [
        (base + r"/clusters/(?P<ident>[^/]+)$", cluster_page),
        (base + r"/campaigns/(?P<ident>[^/]+)$", campaign_page),
        (base + r"/glossary$", glossary_page),
    ]
