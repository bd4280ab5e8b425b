"""`/docs` without the internet: Swagger UI's assets served from the `swagger-ui-py` package, not a CDN.

FastAPI's own /docs page loads Swagger UI from a CDN, so on a machine that reaches nothing it shows
a blank page; ReDoc (also from a CDN) is switched off in `create_app`.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(swagger_ui.__file__).with_name("static")
PREFIX = "/docs-assets"


def install(app: FastAPI) -> None:
    """Serve /docs (and its OAuth2 redirect page) with the packaged Swagger UI assets."""
    if not (ASSETS / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"Swagger UI assets missing from {ASSETS}: reinstall the swagger-ui-py package")
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
