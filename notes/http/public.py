"""Which requests need no credentials: one rule, read by the credentials middleware
(``notes.http.auth``) and by the OpenAPI document (``notes.http.openapi_docs``)."""

from __future__ import annotations

from typing import Any

SESSION_COOKIE = "notes_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # change nothing: no cross-site check
# The docs page and the assets, which sanic-ext and ``app.static`` register (without our flag).
PUBLIC_PATHS = frozenset({"/docs"})
PUBLIC_PREFIXES = ("/docs/", "/static/")


def is_public(route: Any, path: str) -> bool:
    """A route registered with ``ctx_public=True``, or the docs and static files."""
    return (bool(getattr(route.ctx, "public", False)) or path in PUBLIC_PATHS
            or path.startswith(PUBLIC_PREFIXES))
