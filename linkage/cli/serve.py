"""``linkage serve``: the online check over HTTP until SIGTERM (docs/operations.md).

Checks everything a user can get wrong before it listens (exit 2): the API token, the
pseudonymisation key and that it is the store's, the store itself, the address. Then it loads
the latest finished run (if there is one yet), serves, polls the store for a newer run, and on
SIGTERM finishes the requests in flight and exits 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from linkage.cli.common import (
    DbOpt,
    QuietOpt,
    SecretFileOpt,
    VerboseOpt,
    err,
    handle_errors,
    setup_output,
)
from linkage.cli.progress import setup_logging
from linkage.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from linkage.serve.app import ServeState

log = logging.getLogger("linkage.serve")

__all__ = ["MIN_TOKEN_CHARS", "load_token", "serve", "worker_app"]

MIN_TOKEN_CHARS = 16


def load_token() -> bytes:
    """The API token: the file ``LINKAGE_API_TOKEN_FILE`` names, else ``LINKAGE_API_TOKEN``;
    surrounding whitespace is ignored. At least :data:`MIN_TOKEN_CHARS` characters."""
    path = os.environ.get("LINKAGE_API_TOKEN_FILE")
    if path:
        try:
            token = Path(path).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read API token file {path!r}: {exc.strerror}") from None
        source = f"API token file {path!r}"
    elif os.environ.get("LINKAGE_API_TOKEN"):
        token = os.environ["LINKAGE_API_TOKEN"].strip().encode()
        source = "LINKAGE_API_TOKEN"
    else:
        raise ConfigError(
            "no API token: set LINKAGE_API_TOKEN_FILE to a file holding it (e.g. "
            "`openssl rand -hex 32 > api-token`) or LINKAGE_API_TOKEN; clients send it as "
            "`Authorization: Bearer TOKEN`")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the {source} holds {len(token)} characters; at least "
                          f"{MIN_TOKEN_CHARS} are required")
    return token


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (exit 2 when the address cannot be had)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


_WORKER_ARGS = "_LINKAGE_SERVE_WORKER"  # how the parent hands a worker its options


def _state(db: str | None, secret_file: Path | None, poll_seconds: float, *,
           load: bool = True) -> ServeState:
    """The service's state: token, key (the store's), store, and (with ``load``) the latest
    run's index."""
    from linkage.pseudonymise import Pseudonymiser, load_secret
    from linkage.serve.app import ServeState
    from linkage.store import Store

    token = load_token()
    pseudo = Pseudonymiser(load_secret(secret_file))
    store = Store(db)
    try:
        store.require()
        store.check_key(pseudo.check_value())
        state = ServeState(store, pseudo, token, poll_seconds=poll_seconds)
        latest = store.latest_run_id()
        if latest is not None:
            if load:
                state.load(latest)
        else:
            log.warning("no finished run yet: /healthz answers 503 until one is published")
    except BaseException:
        store.close()
        raise
    return state


def worker_app() -> FastAPI:
    """The application of one worker process of ``linkage serve --workers N`` (a uvicorn
    factory): each worker loads its own index from the options the parent passed."""
    from linkage.serve.app import create_app

    args = json.loads(os.environ[_WORKER_ARGS])
    setup_logging(args["verbosity"], err)
    secret = Path(args["secret_file"]) if args["secret_file"] else None
    return create_app(_state(args["db"], secret, args["poll_seconds"]))


def serve(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    secret_file: SecretFileOpt = None,
    poll_seconds: Annotated[float, typer.Option(
        "--poll-seconds", help="How often to look for a newer finished run.",
        min=0.1, max=86400)] = 30.0,
    workers: Annotated[int, typer.Option(
        help="Worker processes sharing the port, each with its own index (one core each).",
        min=1, max=64)] = 1,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Answer the online check over HTTP: does a new account link to the latest run's
    clusters? Runs until SIGTERM. Needs LINKAGE_API_TOKEN_FILE (or LINKAGE_API_TOKEN) and the
    pseudonymisation key (docs/operations.md#the-online-check-linkage-serve).

    Example: linkage serve --db sqlite:///linkage.db --secret-file .linkage-secret
    """
    setup_output(quiet, verbose)
    with handle_errors(verbose):
        try:
            import uvicorn

            from linkage.serve.app import create_app
        except ImportError as exc:
            raise ConfigError(f"linkage serve needs the serve extra: pip install "
                              f"'linkage[serve]' ({exc.name} is missing)") from None
        options: dict[str, Any] = dict(log_config=None, access_log=False, lifespan="on",
                                       timeout_graceful_shutdown=30, server_header=False)
        # Everything a user can get wrong is checked here, before anything listens.
        state = _state(db, secret_file, poll_seconds, load=workers == 1)
        try:
            sock = _listen(host, port)
            err.print(f"listening on http://{host}:{port} (store {state.store.display_url}, "
                      f"{workers} worker{'s' if workers > 1 else ''})",
                      markup=False, highlight=False)
            # uvicorn drains on SIGTERM and then raises the signal again under the handler
            # that was in place before it: with this one that ends in exit 0, as documented.
            previous = signal.signal(signal.SIGTERM, lambda *_: None)
            try:
                if workers == 1:
                    server = uvicorn.Server(uvicorn.Config(create_app(state), **options))
                    server.run(sockets=[sock])
                    if not server.started:
                        raise ConfigError(f"the service did not start on {host}:{port}")
                else:
                    # uvicorn's supervisor binds the address again (the probe above has
                    # shown it can be had), spawns the workers, and on SIGTERM drains and
                    # stops them.
                    sock.close()
                    state.store.close()  # each worker opens its own
                    os.environ[_WORKER_ARGS] = json.dumps({
                        "db": state.store.url, "poll_seconds": poll_seconds,
                        "secret_file": str(secret_file) if secret_file else None,
                        "verbosity": -1 if quiet else (1 if verbose else 0)})
                    uvicorn.run("linkage.cli.serve:worker_app", factory=True, host=host,
                                port=port, workers=workers, **options)
            finally:
                signal.signal(signal.SIGTERM, previous)
                sock.close()
        finally:
            state.store.close()
