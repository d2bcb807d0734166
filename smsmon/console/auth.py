"""Users, password hashing (argon2id), CSRF tokens and the login rate limit."""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from smsmon.store.schema import ROLES, User

_HASHER = PasswordHasher()
# Verified when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))
USERNAME_MAX = 100
PASSWORD_MIN = 10
PASSWORD_MAX = 1024


@dataclass(frozen=True, slots=True)
class CurrentUser:
    """The signed-in user, re-read from the database on every request."""

    username: str
    role: str

    @property
    def can_handle(self) -> bool:
        return self.role == "handler"


def valid_username(name: str) -> bool:
    """Usernames are short printable ASCII without spaces."""
    return (
        0 < len(name) <= USERNAME_MAX and name.isascii() and name.isprintable() and " " not in name
    )


def add_user(engine: Engine, username: str, password: str, role: str) -> None:
    """Create or replace (reset password, role, re-enable) a user."""
    if not valid_username(username):
        raise ValueError("username: 1-100 printable ASCII characters, no spaces")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValueError(f"password must have {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    with Session(engine) as s, s.begin():
        user = s.get(User, username)
        if user is None:
            s.add(
                User(
                    username=username,
                    password_hash=_HASHER.hash(password),
                    role=role,
                    created_at=dt.datetime.now(dt.UTC),
                    disabled=False,
                )
            )
        else:
            user.password_hash = _HASHER.hash(password)
            user.role = role
            user.disabled = False


def authenticate(engine: Engine, username: str, password: str) -> CurrentUser | None:
    """The user if the password matches and the account is enabled, else None."""
    if len(password) > PASSWORD_MAX or len(username) > USERNAME_MAX:
        return None
    with Session(engine) as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
        stored = user.password_hash if user is not None else _DUMMY_HASH
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        if _HASHER.check_needs_rehash(stored):
            with s.begin():
                user.password_hash = _HASHER.hash(password)
        return CurrentUser(user.username, user.role)


def load_user(engine: Engine, username: str) -> CurrentUser | None:
    """The enabled user of a session, or None (deleted or disabled since login)."""
    with Session(engine) as s:
        user = s.get(User, username)
        if user is None or user.disabled:
            return None
        return CurrentUser(user.username, user.role)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: object, given: object) -> bool:
    """Constant-time comparison of the session's token with the form's."""
    return (
        isinstance(expected, str)
        and isinstance(given, str)
        and len(expected) > 0
        and hmac.compare_digest(expected.encode(), given.encode())
    )


class LoginLimiter:
    """At most `attempts` failed logins per client address and per username in a sliding
    window; in memory, since the console runs as one process."""

    def __init__(self, attempts: int, window_seconds: float) -> None:
        self._attempts = attempts
        self._window = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self._window:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self._attempts for k in keys)

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)
            # Bounded memory under a spray of usernames: forget empty entries.
            if len(self._failures) > 10_000:
                for k in [k for k, q in self._failures.items() if not self._recent(k, now)]:
                    del self._failures[k]

    def succeed(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)
