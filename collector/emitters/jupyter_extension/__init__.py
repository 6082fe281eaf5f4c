"""Notebook Observatory's Jupyter server extension: forwards kernel lifecycle events to the collector.

Enable it with one config line (see docs/sources.md):

    c.ServerApp.jpserver_extensions = {"collector.emitters.jupyter_extension": True}
    c.ObservatoryForwarder.collector_url = "http://collector:8080"   # or env OBSERVATORY_URL

or `jupyter server extension enable collector.emitters.jupyter_extension`, or drop
`jupyter-config/jupyter_server_config.d/notebook_observatory.json` into `<prefix>/etc/jupyter/jupyter_server_config.d/`.

It forwards `kernel_actions/v1` events plus what jupyter_server does not emit (crash restarts by the restarter,
kernels that died for good, culling) to `POST /v1/jupyter/events`, from a bounded in-memory buffer drained by a
background thread with retry and backoff. It never blocks or fails the server.
"""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension", "load_jupyter_server_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "collector.emitters.jupyter_extension"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Called by jupyter_server when the extension is enabled. Never raises into the server."""
    try:
        from collector.emitters.jupyter_extension.forwarder import ObservatoryForwarder

        forwarder = ObservatoryForwarder(parent=serverapp, log=serverapp.log)
        forwarder.attach(serverapp)
        serverapp.web_app.settings["observatory_forwarder"] = forwarder
    except Exception:  # noqa: BLE001
        serverapp.log.exception("observatory: the extension failed to load; kernel events are not forwarded")


# The name older loaders (and `jupyter serverextension`) look for.
load_jupyter_server_extension = _load_jupyter_server_extension
