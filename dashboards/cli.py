"""``kilowatch web``: serve the web app with gunicorn (or Flask's server with ``--dev``)."""

from __future__ import annotations

import click
from gunicorn.app.base import BaseApplication

from kilowatch.cli import UserError
from kilowatch.settings import DEFAULT_SECRET_KEY, get_settings, refuse_public_secrets


class _Gunicorn(BaseApplication):
    """Gunicorn running the app factory in each worker."""

    def __init__(self, options: dict) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self):
        from dashboards.app import create_app

        return create_app().server


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8050, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Threads per worker.")
@click.option("--dev", is_flag=True, help="Use Flask's development server (one process).")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve HTTPS with this certificate (PEM); needs --keyfile.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The certificate's private key (PEM).")
def web(host: str, port: int, workers: int, threads: int, dev: bool, certfile: str | None,
        keyfile: str | None) -> None:
    """Serve the web app (HTTPS with --certfile and --keyfile, as devices activate over it)."""
    settings = get_settings()  # a bad KILOWATCH_* value stops here with one line
    if not dev and settings.secret_key == DEFAULT_SECRET_KEY:
        raise UserError("KILOWATCH_SECRET_KEY is not set: the development value would sign "
                        "every session with a public key; set it to a long random secret "
                        "(e.g. `openssl rand -hex 32`), or use --dev on your own machine")
    if not dev:
        refuse_public_secrets(settings)
    if bool(certfile) != bool(keyfile):
        raise UserError("--certfile and --keyfile go together")
    if certfile and dev:
        raise UserError("--dev serves plain HTTP; leave out --certfile and --keyfile")
    scheme = "https" if certfile else "http"
    click.echo(f"Kilowatch web app on {scheme}://{host}:{port}/", err=True)
    if dev:
        from dashboards.app import create_app

        create_app().run(host=host, port=port, debug=False)
        return
    tls = {"certfile": certfile, "keyfile": keyfile} if certfile else {}
    _Gunicorn({"bind": f"{host}:{port}", "workers": workers, "threads": threads,
               "worker_class": "gthread", "timeout": 60, "graceful_timeout": 10,
               "accesslog": None, "errorlog": "-", "loglevel": "warning", **tls}).run()
