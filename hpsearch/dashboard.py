"""``hpsearch dashboard``: optuna-dashboard on the storage and artifact store of ``hpsearch run``.

The app is optuna-dashboard's own (``optuna_dashboard.wsgi``, the same ``create_app`` that
``optuna_dashboard.run_server`` serves), on a threaded wsgiref server like the
``optuna-dashboard`` command's. ``run_server`` is not used directly because it goes through
``bottle.run``: that prints a three-line banner on stderr *before* binding (so a taken port
could not end in one line), logs every request of the polling web page to stderr, and serves
one request at a time. Here the socket is bound first (before the slow imports and the
storage), so a taken port or an address that is not on this machine ends in one line and exit
status 2 within a second, before anything else is printed.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from hpsearch.errors import UsageError


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # Ctrl-C does not wait for the browser's open requests


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No line per request (the page polls the API); errors are still reported."""

    def log_request(self, code="-", size="-") -> None:
        pass

    def address_string(self) -> str:  # no reverse DNS lookup per request
        return self.client_address[0]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the dashboard on this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def url_for(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _bind(host: str, port: int) -> WSGIServer:
    """The listening server, without its app yet: a taken port fails here, in a second, not
    after the imports and the storage."""
    if not 0 < port < 65536:
        raise UsageError(f"port {port} is out of range; choose one from 1024 to 65535 with --port")
    server_class = _Server6 if ":" in host else _Server
    try:
        return server_class((host.strip("[]"), port), _QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            other = port + 1 if port < 65535 else 8081
            raise UsageError(
                f"port {port} on {host} is already in use (another dashboard?); "
                f"choose a free one with --port, e.g. --port {other}"
            ) from None
        if exc.errno == errno.EACCES:
            raise UsageError(f"no permission to listen on port {port}; choose one above 1023 with --port") from None
        if isinstance(exc, socket.gaierror):
            raise UsageError(
                f"cannot listen on {host!r}: unknown host name; use --host 127.0.0.1 (default) or 0.0.0.0"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(
                f"cannot listen on {host!r}: not an address of this machine; use --host 127.0.0.1 (default) or 0.0.0.0"
            ) from None
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None


def _no_such_study(study_name: str, where: str, names: list[str]) -> str:
    """The one line for a ``--study-name`` the storage lacks: the names it holds, or how to
    start a first study there."""
    if not names:
        return (
            f"no study {study_name!r} in {where}, which holds no study yet; start one with "
            f"'hpsearch run STUDY --storage {where}', or leave out --study-name to watch the storage"
        )
    shown = ", ".join(repr(name) for name in sorted(names)[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return (
        f"no study {study_name!r} in {where}, which holds {shown}{more}; "
        "give one of those to --study-name, or leave it out to see every study"
    )


def serve(
    storage_url: str, artifacts_dir: Path, *, host: str = "127.0.0.1", port: int = 8080, study_name: str | None = None
) -> None:
    """Serve optuna-dashboard on ``storage_url`` (with trial weights from the artifact store
    in ``artifacts_dir``) at http://host:port/ until Ctrl-C, which ends it quietly (returns).

    The dashboard shows every study in the storage; with ``study_name`` the printed URL is
    that study's page, and a name the storage lacks is refused with the names it holds,
    before anything is served or printed. Prints one line (the URL to
    open, the storage with its password masked) before serving, plus a warning on stderr
    when ``host`` is not a loopback address. Raises UsageError (one line, password masked),
    before anything is served, for a bad storage URL, an unknown study name, a port in use
    or an address that cannot be bound.
    """
    try:
        server = _bind(host, port)
        try:
            import optuna_dashboard

            from hpsearch.storage import artifact_store, mask, open_storage

            storage = open_storage(storage_url)
            names = [study.study_name for study in storage.get_all_studies()]
            n_studies = len(names)
            page = url_for(host, server.server_port)
            if study_name is not None:
                try:
                    page += f"dashboard/studies/{storage.get_study_id_from_name(study_name)}"
                except KeyError:
                    raise UsageError(_no_such_study(study_name, mask(storage_url), names)) from None
            server.set_app(optuna_dashboard.wsgi(storage, artifact_store=artifact_store(artifacts_dir)))
            studies = f"{n_studies} stud{'y' if n_studies == 1 else 'ies'}" if n_studies else "no study yet"
            print(
                f"optuna-dashboard on {page} for {mask(storage_url)} ({studies}, "
                f"trial weights in {artifacts_dir}); Ctrl-C stops it",
                flush=True,
            )
            if not is_loopback(host):
                print(
                    f"hpsearch: warning: listening on {host}, reachable from other machines; the dashboard "
                    "has no authentication and lets anyone who reaches it edit and delete studies",
                    file=sys.stderr,
                    flush=True,
                )
            server.serve_forever()
        finally:
            server.server_close()
    except KeyboardInterrupt:
        return
