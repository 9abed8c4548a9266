"""The web app: ``siamface serve`` (a REST API under ``/api/v1`` and a Gradio UI at ``/``),
behind the optional ``web`` extra (``pip install 'siamface[web]'``).

* :mod:`siamface.web.state` - :class:`ServeConfig`, :class:`AppState` (models, the bounded
  inference queue, allowed server paths);
* :mod:`siamface.web.actions` - what the API and the UI do (verify, analyze, embed,
  identify, dataset test, model upload), calling the core library only;
* :mod:`siamface.web.api` - the REST router; :mod:`siamface.web.app` - ``create_app``.

An app package: the core library never imports it.
"""

from __future__ import annotations

__all__ = ["AppState", "Busy", "ServeConfig", "create_app"]


def __getattr__(name: str):
    if name in {"AppState", "Busy", "ServeConfig"}:
        from siamface.web import state

        return getattr(state, name)
    if name == "create_app":
        from siamface.web.app import create_app

        return create_app
    raise AttributeError(f"module 'siamface.web' has no attribute {name!r}")
