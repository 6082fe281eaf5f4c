"""The API documentation pages, served from the package: `/docs` (Swagger UI), `/redoc`, their assets under
`/static/docs/`, the assets' licenses at `/docs/licenses`, and a small index at `/`.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank offline or behind a proxy; these load
the vendored builds in collector/api/static/ (README.md there names the versions and licenses). Every page here is
public, like `/openapi.json`: the documentation says what a token allows, it does not need one.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse

from collector.api.errors import NotFound

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).with_name("static")
PREFIX = "/static/docs"
MEDIA = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".txt": "text/plain", "": "text/plain"}
# the only files served: (directory, file name) -> path; a request for anything else is a 404, never a path lookup
ASSETS: dict[tuple[str, str], Path] = {
    (d.name, f.name): f for d in STATIC.iterdir() if d.is_dir() for f in d.iterdir() if f.is_file()
}
LICENSES = (
    ("Swagger UI 5.35.0 (Apache-2.0)", "swagger-ui", ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt")),
    ("ReDoc 2.5.4 (MIT)", "redoc", ("LICENSE", "redoc.standalone.js.LICENSE.txt")),
)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - API docs",
                               swagger_js_url=f"{PREFIX}/swagger-ui/swagger-ui-bundle.js",
                               swagger_css_url=f"{PREFIX}/swagger-ui/swagger-ui.css",
                               swagger_favicon_url=f"{PREFIX}/swagger-ui/favicon-32x32.png",
                               oauth2_redirect_url="/docs/oauth2-redirect")


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    app = request.app
    return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - API reference",
                          redoc_js_url=f"{PREFIX}/redoc/redoc.standalone.js",
                          redoc_favicon_url=f"{PREFIX}/swagger-ui/favicon-32x32.png", with_google_fonts=False)


@router.get(PREFIX + "/{directory}/{name}")
def asset(directory: str, name: str) -> FileResponse:
    path = ASSETS.get((directory, name))
    if path is None:
        raise NotFound(f"no documentation asset {directory}/{name}")
    return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/docs/licenses")
def licenses() -> PlainTextResponse:
    """The licenses of the vendored documentation assets, as their packages ship them."""
    parts = []
    for title, directory, files in LICENSES:
        for name in files:
            parts.append(f"==== {title}: {directory}/{name} ====\n\n{ASSETS[(directory, name)].read_text()}\n")
    return PlainTextResponse("\n".join(parts))


INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:720px;margin:40px auto;padding:0 16px;color:#1a202c}}
code{{background:#f1f5f9;padding:1px 4px;border-radius:3px}}li{{margin:4px 0}}.muted{{color:#718096}}</style>
</head><body><h1>{title}</h1>
<p>Observability and cost analytics for notebook platforms. Most endpoints need
<code>Authorization: Bearer TOKEN</code> (<code>make run</code> prints one).</p>
<ul>
<li><a href="/docs">/docs</a>: interactive API documentation (Swagger UI), with examples</li>
<li><a href="/redoc">/redoc</a>: the same API as a reference (ReDoc)</li>
<li><a href="/openapi.json">/openapi.json</a>: the OpenAPI document</li>
<li><a href="/v1/schema">/v1/schema</a>: JSON Schema of every event type</li>
<li><code>/metrics</code>: Prometheus exposition (read scope); <a href="/healthz">/healthz</a>,
<a href="/readyz">/readyz</a></li>
<li><code>/v1/sli</code>: the 15 SLIs; <code>/v1/cost/summary</code>, <code>/v1/cost/variance</code>,
<code>/v1/cost/report</code>: cost for finance</li>
</ul>
<p class="muted">Version {version}. Documentation assets: Swagger UI and ReDoc, <a href="/docs/licenses">licenses</a>.</p>
</body></html>
"""


@router.get("/")
def index(request: Request) -> HTMLResponse:
    """A newcomer who opens the collector's address in a browser lands here, one click from the docs."""
    return HTMLResponse(INDEX.format(title=escape(request.app.title), version=escape(request.app.version)))
