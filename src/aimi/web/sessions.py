"""Portal sign-in: server-side sessions behind an HttpOnly, SameSite=Strict cookie that expires, and
the CSRF token every state-changing request must carry.

The admin key is checked once, at sign-in, and never stored: the session keeps only who signed in
(the key's last four characters). Sessions live in this process's memory, so signing out (or a
restart) ends them for good.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response

from aimi.errors import Unauthorized

SESSION_COOKIE = "aimi_session"
LOGIN_COOKIE = "aimi_login"
"""Holds the sign-in form's CSRF token until the form comes back (double submit)."""
COOKIE_PATH = "/portal"
SESSION_TTL_S = 8 * 3600
LOGIN_TTL_S = 15 * 60
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class PortalSession:
    id: str
    csrf: str
    who: str
    expires: float


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Signed-in sessions by the SHA-256 of their id (the id itself is only in the cookie)."""

    def __init__(self, *, ttl_s: float = SESSION_TTL_S, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, PortalSession] = {}
        self._lock = threading.Lock()

    def open(self, who: str) -> PortalSession:
        now = self._clock()
        session = PortalSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), who, now + self.ttl_s)
        with self._lock:
            self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
            self._sessions[_digest(session.id)] = session
        return session

    def get(self, session_id: str | None) -> PortalSession | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(_digest(session_id))
            if session is not None and session.expires <= self._clock():
                del self._sessions[_digest(session_id)]
                return None
        return session

    def close(self, session_id: str | None) -> PortalSession | None:
        if not session_id:
            return None
        with self._lock:
            return self._sessions.pop(_digest(session_id), None)


def current(request: Request, sessions: SessionStore) -> PortalSession | None:
    return sessions.get(request.cookies.get(SESSION_COOKIE))


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def check_origin(request: Request) -> None:
    """A browser says where a request comes from; another site's page is refused outright."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise HTTPException(status_code=403, detail="Cross-site request refused.")


def requirer(sessions: SessionStore) -> Callable[[Request], PortalSession]:
    """A dependency for the portal's JSON routes: a session, and for every state-changing method
    its CSRF token in the `X-CSRF-Token` header. Sets `request.state.who` for the record."""

    def require(request: Request) -> PortalSession:
        session = current(request, sessions)
        if session is None:
            raise Unauthorized("Sign in to the portal first (the session is missing or has expired).")
        if request.method not in SAFE_METHODS:
            check_origin(request)
            if not same_token(request.headers.get(CSRF_HEADER), session.csrf):
                raise HTTPException(status_code=403, detail="The CSRF token is missing or wrong.")
        request.state.who = session.who
        request.state.portal_session = session
        return session

    return require
