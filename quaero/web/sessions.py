"""Server-side page sessions: a signed cookie carries a random id, the `sessions` table
holds its SHA-256 until logout or expiry.

Why the database and not a per-token generation in memory: a logout must hold in every
web process (several behind a proxy) and after a restart, and must end one session, not
everyone's. The check is one primary-key read per cookie-authenticated request.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from quaero.models import Session


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


def start(lifetime_seconds: float) -> str:
    """Record a new session; returns the id for the cookie (expired rows are purged)."""
    now = time.time()
    Session.delete().where(Session.expires_at < now).execute()
    session_id = secrets.token_urlsafe(32)
    Session.create(id=_key(session_id), created_at=now, expires_at=now + lifetime_seconds)
    return session_id


def is_live(session_id: object) -> bool:
    """Whether a cookie's session id names a session that is neither ended nor expired."""
    if not isinstance(session_id, str) or not session_id:
        return False
    found = (
        Session.select(Session.id)
        .where(Session.id == _key(session_id), Session.expires_at > time.time())
        .exists()
    )
    return bool(found)


def end(session_id: object) -> None:
    """Revoke a session (logout)."""
    if isinstance(session_id, str) and session_id:
        Session.delete().where(Session.id == _key(session_id)).execute()
