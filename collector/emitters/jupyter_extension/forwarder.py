"""The server-side half of the extension: hooks into jupyter_server and forwards kernel events to the collector.

What it hooks (all on objects the server already has; nothing is patched at class level):

* a **listener** on `kernel_actions/v1` and on our `kernel_lifecycle/v1` (jupyter_events listeners run as asyncio
  tasks after the action, so nothing here delays a kernel start);
* a **modifier** on `kernel_actions/v1` that adds the attribution jupyter_server does not know: `reason: crash`
  (+ `exit_code`, `signal`) on the restart the restarter performed after a death, `reason: culled` on the shutdown
  done by the idle culler, `reason: server_stop` on shutdowns during server exit, and the `observatory` context
  (notebook path, team, owner) once known. Modifiers apply before the event log's own handlers, so a platform
  that also ships its event log gets the same attributed records;
* the kernel manager's **restart** and **dead** callbacks, registered per kernel when it starts;
* the kernel manager's `cull_kernel_if_idle` and `shutdown_all`, wrapped on the instance to know *why* a
  shutdown happens.

Every hook is wrapped so that an exception in it is logged and swallowed: the server never fails because of us.
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import os
import pathlib
import re
import signal as signal_mod
import socket
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any, Callable

from traitlets import Bool, Callable as CallableTrait, Float, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

from collector.emitters.jupyter_extension.sender import BufferedSender

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
KERNEL_LIFECYCLE = "https://events.notebook-observatory.dev/jupyter/kernel_lifecycle/v1"
SCHEMA_FILE = pathlib.Path(__file__).with_name("kernel_lifecycle.yaml")
MAX_NAME = 128


def _ensure_async(value: Any):
    async def _wrap():
        return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) else value

    return _wrap()


def signal_name(exit_code: int | None) -> str | None:
    if exit_code is None or exit_code >= 0:
        return None
    try:
        return signal_mod.Signals(-exit_code).name
    except ValueError:
        return f"SIG{-exit_code}"


def _dotted(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


class ObservatoryForwarder(LoggingConfigurable):
    """Configure with `c.ObservatoryForwarder.<trait>` in jupyter_server_config.py (see docs/sources.md)."""

    collector_url = Unicode(
        help="Base URL of the collector, e.g. http://collector:8080 (env OBSERVATORY_URL). Empty = disabled."
    ).tag(config=True)

    @default("collector_url")
    def _default_url(self) -> str:
        return os.environ.get("OBSERVATORY_URL", "")

    token = Unicode(help="Bearer token with the `ingest` scope (env OBSERVATORY_TOKEN).").tag(config=True)

    @default("token")
    def _default_token(self) -> str:
        return os.environ.get("OBSERVATORY_TOKEN", "")

    server_name = Unicode(
        help="Name of this server in the event source `jupyter://<server_name>` (env OBSERVATORY_SERVER_NAME; "
             "default: the host name, plus the JupyterHub user and server name when running under a hub)."
    ).tag(config=True)

    @default("server_name")
    def _default_server_name(self) -> str:
        if os.environ.get("OBSERVATORY_SERVER_NAME"):
            return os.environ["OBSERVATORY_SERVER_NAME"]
        name = socket.gethostname()
        if os.environ.get("JUPYTERHUB_USER"):
            name += "/" + os.environ["JUPYTERHUB_USER"]
            if os.environ.get("JUPYTERHUB_SERVER_NAME"):
                name += "/" + os.environ["JUPYTERHUB_SERVER_NAME"]
        return name

    team_sources = List(
        Unicode(), default_value=["env:OBSERVATORY_TEAM", "notebook_metadata:observatory.team"],
        help="Where the team comes from, first non-empty wins. Forms: `env:VAR` (server environment), "
             "`kernel_env:VAR` (the kernel's launch environment), `static:VALUE`, `path_regex:REGEX` (first group, "
             "or the group named `value`, matched on the notebook path), `notebook_metadata:dotted.key`, "
             "`path` (the notebook path), `user` (the OS user).",
    ).tag(config=True)
    owner_sources = List(
        Unicode(), default_value=["notebook_metadata:observatory.owner", "env:JUPYTERHUB_USER", "user"],
        help="Where the owner comes from; same forms as team_sources.",
    ).tag(config=True)
    notebook_id_sources = List(
        Unicode(), default_value=["notebook_metadata:observatory.notebook_id", "path"],
        help="Where the notebook_id comes from; same forms as team_sources.",
    ).tag(config=True)
    team_resolver = CallableTrait(
        None, allow_none=True,
        help="Optional callable(context: dict) -> str | None consulted before team_sources. The context has "
             "kernel_id, kernel_name, notebook_path, session_id, kernel_env, notebook_metadata.",
    ).tag(config=True)
    owner_resolver = CallableTrait(None, allow_none=True, help="Like team_resolver, for the owner.").tag(config=True)

    buffer_size = Integer(10_000, help="Events held in memory while the collector is away (oldest dropped).").tag(
        config=True)
    batch_size = Integer(200, help="Most events in one request.").tag(config=True)
    linger_seconds = Float(0.2, help="Wait this long after the first event so a burst shares one request.").tag(
        config=True)
    request_timeout = Float(5.0, help="Timeout of one request to the collector, seconds.").tag(config=True)
    backoff_initial = Float(0.5, help="First retry delay after a failed request, seconds (doubles, ±20% jitter).").tag(
        config=True)
    backoff_max = Float(30.0, help="Longest retry delay, seconds.").tag(config=True)
    session_wait_seconds = Float(
        2.0, help="How long to wait for the session of a new kernel to appear (to learn the notebook path).").tag(
        config=True)
    exit_flush_seconds = Float(5.0, help="At server exit, wait this long for buffered events to be delivered.").tag(
        config=True)
    enabled = Bool(True, help="Set False to load the extension without forwarding anything.").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.serverapp: Any = None
        self.sender: BufferedSender | None = None
        self._context: dict[str, dict[str, Any]] = {}       # kernel_id -> observatory context
        self._pending_crash: dict[str, dict[str, Any]] = {}  # kernel_id -> attribution for its next restart event
        self._culling: set[str] = set()
        self._server_stopping = False
        self._callbacks: dict[str, tuple[Any, Callable, Callable]] = {}
        self._tasks: set[asyncio.Task] = set()

    # ---- wiring ----------------------------------------------------------------------------------------------

    def attach(self, serverapp: Any) -> bool:
        self.serverapp = serverapp
        if not self.enabled:
            self.log.info("observatory: forwarding disabled (ObservatoryForwarder.enabled = False)")
            return False
        if not self.collector_url:
            self.log.warning("observatory: no collector URL (c.ObservatoryForwarder.collector_url or "
                             "OBSERVATORY_URL); kernel events are not forwarded")
            return False
        url = (self.collector_url.rstrip("/") + "/v1/jupyter/events?server="
               + urllib.parse.quote(self.server_name, safe=""))
        self.sender = BufferedSender(
            url, token=self.token or None, max_buffer=self.buffer_size, batch_size=self.batch_size,
            linger=self.linger_seconds, timeout=self.request_timeout, backoff_initial=self.backoff_initial,
            backoff_max=self.backoff_max, log=self.log,
        )
        el = serverapp.event_logger
        try:
            el.register_event_schema(SCHEMA_FILE)
        except Exception as exc:  # noqa: BLE001 - already registered by another instance
            self.log.debug("observatory: schema registration: %s", exc)
        el.add_modifier(schema_id=KERNEL_ACTIONS, modifier=self._modify)
        el.add_listener(schema_id=KERNEL_ACTIONS, listener=self._on_event)
        el.add_listener(schema_id=KERNEL_LIFECYCLE, listener=self._on_event)
        km = serverapp.kernel_manager
        self._wrap(km, "cull_kernel_if_idle", self._culling_wrapper)
        self._wrap(km, "shutdown_all", self._shutdown_all_wrapper)
        self.sender.start()
        atexit.register(self.close)
        self.log.info("observatory: forwarding kernel events to %s as jupyter://%s", self.collector_url,
                      self.server_name)
        return True

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close(self.exit_flush_seconds)
            if self.sender.pending:
                self.log.warning("observatory: %d events not delivered at exit", self.sender.pending)

    @staticmethod
    def _wrap(obj: Any, name: str, factory: Callable[[Callable], Callable]) -> None:
        original = getattr(obj, name, None)
        if original is not None and not getattr(original, "_observatory_wrapped", False):
            wrapped = factory(original)
            wrapped._observatory_wrapped = True  # type: ignore[attr-defined]
            setattr(obj, name, wrapped)

    def _culling_wrapper(self, original: Callable) -> Callable:
        async def cull_kernel_if_idle(kernel_id: str, *args: Any, **kwargs: Any) -> Any:
            self._culling.add(kernel_id)
            try:
                return await _ensure_async(original(kernel_id, *args, **kwargs))
            finally:
                self._culling.discard(kernel_id)

        return cull_kernel_if_idle

    def _shutdown_all_wrapper(self, original: Callable) -> Callable:
        async def shutdown_all(*args: Any, **kwargs: Any) -> Any:
            self._server_stopping = True
            return await _ensure_async(original(*args, **kwargs))

        return shutdown_all

    # ---- the modifier: synchronous, inside the kernel action; must never raise ---------------------------------

    def _modify(self, schema_id: str, data: dict[str, Any]) -> dict[str, Any]:
        try:
            kid, action = data.get("kernel_id"), data.get("action")
            if action == "restart" and kid in self._pending_crash:
                data.update(self._pending_crash.pop(kid))
            elif action == "restart" and "reason" not in data:
                data["reason"] = "user"
            elif action == "shutdown" and "reason" not in data:
                data["reason"] = ("culled" if kid in self._culling else
                                  "server_stop" if self._server_stopping else "user")
            if kid in self._context:
                data.setdefault("observatory", dict(self._context[kid]))
        except Exception:  # noqa: BLE001
            self.log.debug("observatory: modifier failed", exc_info=True)
        return data

    # ---- the listener: async task after the action --------------------------------------------------------------

    async def _on_event(self, logger: Any = None, schema_id: str = "", data: dict[str, Any] | None = None) -> None:
        try:
            now = datetime.now(timezone.utc)
            data = dict(data or {})
            kid = data.get("kernel_id")
            action, ok = data.get("action"), data.get("status", "success") == "success"
            if schema_id == KERNEL_ACTIONS and action == "start" and ok and kid:
                self._register_callbacks(kid)
                self._context[kid] = await self._resolve_context(kid)
            record = {
                "__timestamp__": now.isoformat() + "Z",  # the same shape jupyter_events writes (+00:00Z)
                "__schema__": schema_id,
                "__schema_version__": "1",
                "__metadata_version__": 1,
                **data,
            }
            ctx = dict(self._context.get(kid, {})) if kid else {}
            ctx.update(data.get("observatory") or {})
            ctx["server"] = self.server_name
            record["observatory"] = ctx
            if self.sender is not None:
                self.sender.put(record)
            if kid and ((action == "shutdown" and ok) or action == "died"):
                self._forget(kid)
        except Exception:  # noqa: BLE001
            self.log.warning("observatory: could not forward a kernel event", exc_info=True)

    # ---- restarter callbacks ------------------------------------------------------------------------------------

    def _register_callbacks(self, kernel_id: str) -> None:
        km = self.serverapp.kernel_manager
        try:
            kernel = km.get_kernel(kernel_id)
        except Exception:  # noqa: BLE001 - gone already
            return

        def on_restart() -> None:
            self._on_restart(kernel_id, kernel)

        def on_dead() -> None:
            self._on_dead(kernel_id, kernel)

        try:
            kernel.add_restart_callback(on_restart, "restart")
            kernel.add_restart_callback(on_dead, "dead")
            self._callbacks[kernel_id] = (kernel, on_restart, on_dead)
        except Exception:  # noqa: BLE001
            self.log.debug("observatory: cannot register restart callbacks for %s", kernel_id, exc_info=True)

    def _forget(self, kernel_id: str) -> None:
        self._context.pop(kernel_id, None)
        self._pending_crash.pop(kernel_id, None)
        entry = self._callbacks.pop(kernel_id, None)
        if entry:
            kernel, on_restart, on_dead = entry
            try:
                kernel.remove_restart_callback(on_restart, "restart")
                kernel.remove_restart_callback(on_dead, "dead")
            except Exception:  # noqa: BLE001
                pass

    @staticmethod
    def _exit_code(kernel: Any) -> int | None:
        """The dead kernel's return code when the provisioner is local (negative = killed by that signal)."""
        try:
            proc = getattr(getattr(kernel, "provisioner", None), "process", None)
            if proc is not None:
                return proc.poll()
        except Exception:  # noqa: BLE001
            pass
        return None

    def _on_restart(self, kernel_id: str, kernel: Any) -> None:
        """Fired by the restarter when it found the kernel dead, just before it restarts it."""
        try:
            code = self._exit_code(kernel)
            restarter = getattr(kernel, "_restarter", None)
            attempt = int(getattr(restarter, "_restart_count", 1) or 1)
            info: dict[str, Any] = {"reason": "crash", "restart_attempt": attempt}
            if code is not None:
                info["exit_code"] = code
                if signal_name(code):
                    info["signal"] = signal_name(code)
            self._pending_crash[kernel_id] = info
            self.log.info("observatory: kernel %s died (exit %s); restarter restarting it (attempt %d)",
                          kernel_id, code, attempt)
        except Exception:  # noqa: BLE001
            self.log.debug("observatory: restart callback failed", exc_info=True)

    def _on_dead(self, kernel_id: str, kernel: Any) -> None:
        """Fired when the restarter gives up: the kernel is gone for good. jupyter_server emits no event."""
        try:
            self._pending_crash.pop(kernel_id, None)
            code = self._exit_code(kernel)
            sig = signal_name(code)
            reason = "signal" if sig else ("crash" if code else "unknown")
            data: dict[str, Any] = {
                "action": "died", "kernel_id": kernel_id, "reason": reason,
                "msg": f"Kernel {kernel_id} died and was not restarted"
                       + (f" (exit code {code}{', ' + sig if sig else ''})" if code is not None else ""),
            }
            if getattr(kernel, "kernel_name", None):
                data["kernel_name"] = kernel.kernel_name
            if code is not None:
                data["exit_code"] = code
            if sig:
                data["signal"] = sig
            self.serverapp.event_logger.emit(schema_id=KERNEL_LIFECYCLE, data=data)
        except Exception:  # noqa: BLE001
            self.log.warning("observatory: dead callback failed", exc_info=True)

    # ---- team / owner / notebook ---------------------------------------------------------------------------------

    async def _resolve_context(self, kernel_id: str) -> dict[str, Any]:
        app = self.serverapp
        ctx: dict[str, Any] = {}
        path = session_id = None
        deadline = time.monotonic() + self.session_wait_seconds
        while True:
            try:
                model = await _ensure_async(app.session_manager.get_session(kernel_id=kernel_id))
                path, session_id = model.get("path"), model.get("id")
                break
            except Exception:  # noqa: BLE001 - not saved yet (the kernel starts before its session row)
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.1)
        kernel_env: dict[str, str] = {}
        kernel_name = None
        try:
            kernel = app.kernel_manager.get_kernel(kernel_id)
            kernel_env = dict((getattr(kernel, "_launch_args", None) or {}).get("env") or {})
            kernel_name = kernel.kernel_name
        except Exception:  # noqa: BLE001
            pass
        path = path or kernel_env.get("JPY_SESSION_NAME")
        if path:
            ctx["notebook_path"] = str(path)[:4096]
        if session_id:
            ctx["session_id"] = str(session_id)[:256]
        lookup = {"kernel_id": kernel_id, "kernel_name": kernel_name, "notebook_path": path,
                  "session_id": session_id, "kernel_env": kernel_env, "notebook_metadata": None}
        sources = [*self.team_sources, *self.owner_sources, *self.notebook_id_sources]
        if path and str(path).endswith(".ipynb") and any(s.startswith("notebook_metadata:") for s in sources):
            try:
                model = await _ensure_async(app.contents_manager.get(path, content=True, type="notebook"))
                lookup["notebook_metadata"] = dict((model.get("content") or {}).get("metadata") or {})
            except Exception:  # noqa: BLE001
                self.log.debug("observatory: cannot read metadata of %s", path, exc_info=True)
        for key, sources_, resolver in (("team", self.team_sources, self.team_resolver),
                                        ("owner", self.owner_sources, self.owner_resolver),
                                        ("notebook_id", self.notebook_id_sources, None)):
            value = None
            if resolver is not None:
                try:
                    value = resolver(dict(lookup))
                except Exception:  # noqa: BLE001
                    self.log.warning("observatory: %s_resolver failed", key, exc_info=True)
            for spec in sources_:
                if value:
                    break
                value = self._from_source(spec, lookup)
            if value:
                limit = 256 if key == "notebook_id" else MAX_NAME
                ctx[key] = str(value).strip()[:limit]
        return ctx

    @staticmethod
    def _from_source(spec: str, lookup: dict[str, Any]) -> str | None:
        kind, _, arg = spec.partition(":")
        if kind == "env":
            return os.environ.get(arg) or None
        if kind == "kernel_env":
            return (lookup.get("kernel_env") or {}).get(arg) or None
        if kind == "static":
            return arg or None
        if kind == "path":
            return lookup.get("notebook_path") or None
        if kind == "user":
            try:
                return getpass.getuser()
            except Exception:  # noqa: BLE001
                return None
        if kind == "path_regex":
            path = lookup.get("notebook_path")
            m = re.search(arg, path) if path else None
            if m:
                return m.groupdict().get("value") or (m.group(1) if m.groups() else m.group(0))
            return None
        if kind == "notebook_metadata":
            value = _dotted(lookup.get("notebook_metadata") or {}, arg)
            return str(value) if isinstance(value, (str, int)) and value != "" else None
        return None
