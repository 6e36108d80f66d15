"""Where ``llmgw login`` keeps its tokens, and the refresh that keeps them fresh.

- **The OS keyring** (``keyring``: macOS Keychain, Windows Credential Locker, the freedesktop
  Secret Service, KWallet), service ``llmgw-login``, one entry per server URL holding the login
  as JSON. This is the default.
- **A file** ``$LLMGW_HOME/credentials.json`` with mode 0600, only when there is no keyring
  backend and the user asked for it with ``--store-file``. A file readable by others is refused,
  as ssh refuses such a key.
- ``$LLMGW_HOME/logins.json`` (no secrets: URL, where it is stored, client, scope, user) lists
  the logins, because a keyring cannot be enumerated; ``logout`` and ``whoami`` without ``--url``
  use it.

Refresh tokens rotate (every refresh spends the old one), so two processes refreshing the same
login at once would present the same token twice and the server would revoke the whole family.
``refresh`` therefore takes an exclusive lock (``$LLMGW_HOME/login.lock``, ``flock``), reads the
stored login again under it, and refreshes only if another process did not already. The new
refresh token is stored before the new access token is used.

Nothing here prints or logs a token; ``StoredLogin``'s repr leaves them out.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import httpx

from llmgw.errors import AuthError, ConfigError, UsageError

__all__ = [
    "KEYRING_SERVICE",
    "CredentialStore",
    "LoginAuth",
    "StoredLogin",
    "keyring_problem",
    "normalise_url",
]

KEYRING_SERVICE = "llmgw-login"
"""The keyring service name; the entry's user name is the server URL."""
REFRESH_BEFORE = 60.0
"""Seconds before expiry at which a stored access token is refreshed rather than used."""

Where = Literal["keyring", "file"]


def normalise_url(url: str) -> str:
    """The server URL as logins are keyed: scheme and host lower case, no trailing slash."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"{url!r} is not an http(s) URL",
            hint="give the server's address, e.g. --url http://127.0.0.1:8080 (or LLMGW_URL)",
            param="url",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError(
            "the server URL must not carry credentials, a query or a fragment",
            hint="give just the address, e.g. --url https://llmgw.example.com",
            param="url",
        )
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"{url!r} has a bad port", param="url") from None
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class StoredLogin:
    """One server's login: tokens plus what refreshing and revoking them needs."""

    url: str
    client_id: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    """Unix time the access token expires."""
    scope: str
    token_endpoint: str
    revocation_endpoint: str
    user: str | None = None
    """Who logged in (the token's ``email`` or ``sub`` claim), for ``whoami`` and listings."""
    logged_in_at: float = 0.0

    def fresh(self, now: float, margin: float = REFRESH_BEFORE) -> bool:
        """Whether the access token is good for at least ``margin`` more seconds."""
        return now + margin < self.expires_at

    def to_json(self) -> str:
        """The login as stored."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StoredLogin:
        """A stored login; ``ConfigError`` when the entry is damaged."""
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"the stored login is damaged ({type(exc).__name__})",
                hint="run `llmgw logout --local` and `llmgw login` again",
            ) from None


def keyring_problem() -> str | None:
    """Why the OS keyring cannot be used (one line), or ``None`` when it can."""
    try:
        import keyring
        from keyring.backends import chainer, fail
    except ImportError:  # pragma: no cover - keyring is a dependency
        return "the keyring package is not installed"
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001 - a broken backend is "no backend" here
        return f"the OS keyring failed to load ({type(exc).__name__})"
    if isinstance(backend, fail.Keyring) or (
        isinstance(backend, chainer.ChainerBackend) and not backend.backends
    ):
        return "no OS keyring backend is available (no Secret Service, Keychain or KWallet)"
    return None


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (POSIX ``flock``; nothing where it does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: one process at a time is up to the user
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (a temporary file then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if hasattr(os, "fchmod"):  # POSIX (Windows has no group/other bits to clear)
            os.fchmod(fd, 0o600)  # whatever the umask or an older file said
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class CredentialStore:
    """The stored logins under ``home`` (``$LLMGW_HOME``), in the keyring or the 0600 file."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.file = home / "credentials.json"
        self.index_file = home / "logins.json"
        self.lock_file = home / "login.lock"
        self._thread_lock = threading.Lock()

    # -- the index (no secrets) -----------------------------------------------------------
    def index(self) -> dict[str, dict[str, Any]]:
        """Every stored login by URL: where it is kept, client, scope, user, when."""
        try:
            data = json.loads(self.index_file.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _set_index(self, url: str, entry: dict[str, Any] | None) -> None:
        data = self.index()
        if entry is None:
            data.pop(url, None)
        else:
            data[url] = entry
        _write_private(self.index_file, json.dumps(data, indent=2, sort_keys=True) + "\n")

    # -- the 0600 file --------------------------------------------------------------------
    def _read_file(self) -> dict[str, str]:
        try:
            st = self.file.stat()
        except FileNotFoundError:
            return {}
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{self.file} can be read by other users (mode {stat.S_IMODE(st.st_mode):o}); "
                "its tokens are not used",
                hint=f"chmod 600 {self.file}, or delete it and run `llmgw login` again",
            )
        try:
            data = json.loads(self.file.read_text())
        except ValueError:
            raise ConfigError(
                f"{self.file} is damaged", hint="delete it and run `llmgw login` again"
            ) from None
        return data if isinstance(data, dict) else {}

    # -- one login ------------------------------------------------------------------------
    def where(self, url: str) -> Where | None:
        """Where the login for ``url`` is kept, per the index."""
        entry = self.index().get(url)
        kind = entry.get("store") if isinstance(entry, dict) else None
        return kind if kind in ("keyring", "file") else None

    def load(self, url: str) -> StoredLogin | None:
        """The login for ``url``, or ``None`` when there is none."""
        kind = self.where(url)
        text: str | None = None
        if kind == "file":
            text = self._read_file().get(url)
        elif kind == "keyring":
            import keyring

            try:
                text = keyring.get_password(KEYRING_SERVICE, url)
            except Exception as exc:  # noqa: BLE001 - a locked or absent keyring
                raise ConfigError(
                    f"reading the OS keyring failed ({type(exc).__name__})",
                    hint="unlock the keyring, or run `llmgw login --store-file` where there is none",
                ) from None
        return StoredLogin.from_json(text) if text else None

    def save(self, login: StoredLogin, where: Where) -> None:
        """Store ``login`` (replacing any earlier one for its URL) in ``where``."""
        with self._thread_lock:
            self._save(login, where)

    def _save(self, login: StoredLogin, where: Where) -> None:
        if where == "keyring":
            import keyring

            keyring.set_password(KEYRING_SERVICE, login.url, login.to_json())
        else:
            data = self._read_file()
            data[login.url] = login.to_json()
            _write_private(self.file, json.dumps(data, indent=2, sort_keys=True) + "\n")
        self._set_index(
            login.url,
            {
                "store": where,
                "client_id": login.client_id,
                "scope": login.scope,
                "user": login.user,
                "logged_in_at": login.logged_in_at,
            },
        )

    def forget(self, url: str) -> bool:
        """Delete the login for ``url`` from wherever it is; whether there was one."""
        with self._thread_lock, _flock(self.lock_file):
            kind = self.where(url)
            found = kind is not None
            if kind == "keyring":
                import keyring
                from keyring.errors import PasswordDeleteError

                with contextlib.suppress(PasswordDeleteError):
                    keyring.delete_password(KEYRING_SERVICE, url)
            if self.file.exists():
                data = self._read_file()
                if data.pop(url, None) is not None:
                    found = True
                    if data:
                        _write_private(self.file, json.dumps(data, indent=2, sort_keys=True) + "\n")
                    else:
                        self.file.unlink()
            self._set_index(url, None)
            return found

    @contextlib.contextmanager
    def locked(self) -> Generator[None]:
        """The exclusive lock every refresh holds (threads of this process and other processes)."""
        with self._thread_lock, _flock(self.lock_file):
            yield

    def refresh(
        self,
        url: str,
        used: str | None,
        do_refresh: Callable[[StoredLogin], StoredLogin],
        *,
        now: Callable[[], float] = time.time,
    ) -> StoredLogin:
        """The login for ``url`` with an access token that is fresh and is not ``used``.

        Under the lock: read the stored login again; if another process refreshed it already (its
        access token is fresh and differs from ``used``, the one the caller saw refused or
        expiring), use that; otherwise ``do_refresh`` it and store the result before returning.
        """
        with self.locked():
            current = self.load(url)
            if current is None:
                raise _not_logged_in(url)
            if current.access_token != used and current.fresh(now()):
                return current
            renewed = do_refresh(current)
            self._save(renewed, self.where(url) or "keyring")
            return renewed


def _not_logged_in(url: str) -> AuthError:
    return AuthError(
        f"not logged in to {url}",
        hint=f"run `llmgw login --url {url}` (or pass --token / set LLMGW_TOKEN)",
    )


def not_logged_in(url: str) -> AuthError:
    """The error every command gives when it needs a login that is not there."""
    return _not_logged_in(url)


class LoginAuth(httpx.Auth):
    """httpx authentication from a stored login: sends its access token, refreshes it when it
    is about to expire, and once more when the server answers 401 (then retries the request).

    ``renew`` turns a stored login into a refreshed one (``llmgw.cli.login.renew``); it runs with
    the store's lock held. Thread safe: the TUI polls from worker threads.
    """

    def __init__(
        self,
        store: CredentialStore,
        login: StoredLogin,
        renew: Callable[[StoredLogin], StoredLogin],
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._login = login
        self._renew = renew
        self._now = now
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LoginAuth(url={self._login.url!r})"

    @property
    def login(self) -> StoredLogin:
        """The login as last seen (tokens current as of the last request)."""
        return self._login

    def token(self, *, refused: str | None = None) -> str:
        """An access token to send; a refreshed one when the current one is ``refused`` or near
        its expiry."""
        with self._lock:
            login = self._login
            if refused is None and login.fresh(self._now()):
                return login.access_token
            self._login = self._store.refresh(
                login.url, refused or login.access_token, self._renew, now=self._now
            )
            return self._login.access_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Bearer token; after a 401, one refresh and one retry."""
        sent = self.token()
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code == 401 and self._login.refresh_token is not None:
            try:
                again = self.token(refused=sent)
            except AuthError:
                return  # the refresh was refused too: the caller sees the first 401
            request.headers["Authorization"] = f"Bearer {again}"
            yield request


def with_tokens(login: StoredLogin, **changes: Any) -> StoredLogin:
    """``login`` with some fields replaced (for refreshes)."""
    return replace(login, **changes)
