"""``linkage serve``: the online check over HTTP until SIGTERM (docs/operations.md).

Checks everything a user can get wrong before it listens (exit 2): the API token, the
pseudonymisation key and that it is the store's, the store itself, the address. Then it loads
the latest finished run (if there is one yet), serves, polls the store for a newer run, and on
SIGTERM finishes the requests in flight and exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from linkage.cli import DbOpt, QuietOpt, SecretFileOpt, VerboseOpt, _errors, _setup, _store, err
from linkage.errors import ConfigError

__all__ = ["MIN_TOKEN_CHARS", "load_token", "register", "serve"]

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


def serve(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    secret_file: SecretFileOpt = None,
    poll_seconds: Annotated[float, typer.Option(
        "--poll-seconds", help="How often to look for a newer finished run.",
        min=0.1, max=86400)] = 30.0,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Answer the online check over HTTP: does a new account link to the latest run's
    clusters? Runs until SIGTERM. Needs LINKAGE_API_TOKEN_FILE (or LINKAGE_API_TOKEN) and the
    pseudonymisation key (docs/operations.md#the-online-check-linkage-serve).

    Example: linkage serve --db sqlite:///linkage.db --secret-file .linkage-secret
    """
    _setup(quiet, verbose)
    with _errors(verbose):
        try:
            import uvicorn

            from linkage.serve.app import ServeState, create_app
        except ImportError as exc:
            raise ConfigError(f"linkage serve needs the serve extra: pip install "
                              f"'linkage[serve]' ({exc.name} is missing)") from None
        from linkage.pseudonymise import Pseudonymiser, load_secret

        token = load_token()
        pseudo = Pseudonymiser(load_secret(secret_file))
        with _store(db) as store:
            store.check_key(pseudo.check_value())
            state = ServeState(store, pseudo, token, poll_seconds=poll_seconds)
            latest = store.latest_run_id()
            if latest is not None:
                state.load(latest)
            else:
                err.print("no finished run yet: /healthz answers 503 until one is published",
                          markup=False)
            sock = _listen(host, port)
            config = uvicorn.Config(
                create_app(state), log_config=None, access_log=False, lifespan="on",
                timeout_graceful_shutdown=30, server_header=False,
            )
            server = uvicorn.Server(config)
            err.print(f"listening on http://{host}:{port} (store {store.display_url})",
                      markup=False, highlight=False)
            # uvicorn drains on SIGTERM and then raises the signal again under the handler
            # that was in place before it: with this one that ends in exit 0, as documented.
            previous = signal.signal(signal.SIGTERM, lambda *_: None)
            try:
                server.run(sockets=[sock])
            finally:
                signal.signal(signal.SIGTERM, previous)
                sock.close()
        if not server.started:
            raise ConfigError(f"the service did not start on {host}:{port}")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``linkage`` command."""
    app.command("serve")(serve)
