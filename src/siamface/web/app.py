"""``create_app``: one ASGI app with the REST API under ``/api/v1`` (:mod:`siamface.web.api`)
and, when Gradio is installed, the web UI (:mod:`siamface.web.ui`) mounted at ``/``.

Offline by construction: the API's interactive docs (Swagger UI, ReDoc) are switched off
because their pages load scripts from a CDN; the schema itself is at ``/openapi.json``.
Before Gradio is imported, analytics are switched off (``GRADIO_ANALYTICS_ENABLED=False``)
and Gradio's upload folder is pointed at a private temporary folder (mode 0700, removed when
the process exits) unless ``GRADIO_TEMP_DIR`` is set already.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import logging
import os
import shutil
import tempfile
from typing import Any

from siamface.web.state import AppState, ServeConfig

__all__ = ["create_app", "prepare_gradio_environment"]

logger = logging.getLogger(__name__)
_private_temp: str | None = None


def prepare_gradio_environment() -> None:
    """Environment Gradio reads at import: no analytics or Hugging Face telemetry, and a
    private upload folder (unless the caller chose one)."""
    global _private_temp
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not os.environ.get("GRADIO_TEMP_DIR"):
        if _private_temp is None:
            _private_temp = tempfile.mkdtemp(prefix="siamface-gradio-")
            os.chmod(_private_temp, 0o700)
            atexit.register(shutil.rmtree, _private_temp, True)
        os.environ["GRADIO_TEMP_DIR"] = _private_temp


def _mount_ui(app, state: AppState) -> bool:
    """Mount the Gradio UI at ``/``; False (and a log line) when Gradio or the UI module is
    missing."""
    prepare_gradio_environment()
    try:
        import gradio

        from siamface.web import ui
    except ImportError as exc:
        logger.warning("web UI not mounted (%s); the API is served alone", exc)
        return False
    options: dict[str, Any] = {"path": "/", "max_file_size": state.config.max_request_bytes,
                               "ssr_mode": False, "server_name": state.config.host,
                               "server_port": state.config.port}
    key = state.config.api_key
    if key:  # the UI calls the actions directly: protect it with the same key
        options["auth"] = lambda _user, password: hmac.compare_digest(
            str(password).encode("utf-8"), key.encode("utf-8"))
        options["auth_message"] = "This siamface server needs its API key (any user name)."
    extra = getattr(ui, "mount_options", None)
    if callable(extra):
        options.update(extra(state) or {})
    gradio.mount_gradio_app(app, ui.build_ui(state), **options)
    return True


def create_app(config: ServeConfig | None = None, *, state: AppState | None = None,
               ui: bool | None = None):
    """The FastAPI app of ``config`` (or of an already built ``state``, which the caller
    then owns and closes). ``ui``: mount the Gradio UI (default: ``config.ui``)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    import siamface
    from siamface.web import api

    owned = state is None
    if state is None:
        state = AppState(config if config is not None else ServeConfig())
    elif config is not None and config is not state.config:
        raise ValueError("give config or state, not both")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            if owned:
                state.close()

    app = FastAPI(title="siamface", version=siamface.__version__,
                  description="Face verification and gender classification (REST API v1). "
                  "Errors are JSON {code, message}; see siamface.web.api.",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  lifespan=lifespan)
    app.state.siamface = state
    api.install(app, state)
    mounted = False
    if ui if ui is not None else state.config.ui:
        mounted = _mount_ui(app, state)
    if not mounted:
        @app.get("/", include_in_schema=False)
        async def root():
            return JSONResponse({"name": "siamface", "api": api.API_PREFIX,
                                 "openapi": "/openapi.json",
                                 "ui": "not mounted (siamface serve without --no-ui, with "
                                 "gradio installed)"})
    app.state.ui_mounted = mounted
    return app
