"""``RemoteAdmin`` on the wire: headers, paths, bodies, the error envelope mapped to local mode's
classes, an unreachable server as one clear error, and the token kept out of every message.

The admin routes themselves are exercised end to end in tests/cli/test_remote_admin.py against a
real ``llmgw serve``; here a real loopback HTTP server records what the client sends and answers
what a test tells it to.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmgw import __version__
from llmgw.admin.answers import error_from_answer
from llmgw.admin.ops import UNSET
from llmgw.admin.remote import RemoteAdmin
from llmgw.errors import (
    AuthError,
    Conflict,
    DatabaseError,
    LlmgwError,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unavailable,
    UsageError,
)

TOKEN = "llmgw_" + "S3cr3t" * 7 + "x"  # the shape of a real key: 6 + 43 characters
assert len(TOKEN) == 49


class Recorder:
    """A real HTTP server on a free loopback port: records requests, answers ``reply``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: tuple[int, Any, dict[str, str]] = (200, {"object": "list", "data": []}, {})
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                rec.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(raw) if raw else None,
                    }
                )
                status, body, headers = rec.reply
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture
def admin(server: Recorder) -> Iterator[RemoteAdmin]:
    with RemoteAdmin(server.url + "/", TOKEN, "tui") as ops:
        yield ops


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_call_carries_the_token_the_version_and_the_source(
    server: Recorder, admin: RemoteAdmin
) -> None:
    assert admin.keys_list() == []
    req = server.last
    assert (req["method"], req["path"]) == ("GET", "/admin/v1/keys")
    assert req["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert req["headers"]["user-agent"] == f"llmgw/{__version__}"
    assert req["headers"]["x-llmgw-source"] == "tui"


def test_paths_queries_and_bodies_follow_the_route_table(
    server: Recorder, admin: RemoteAdmin
) -> None:
    admin.keys_list(include_revoked=True)
    assert server.last["path"] == "/admin/v1/keys?all=true"
    server.reply = (200, {"id": "k"}, {})
    admin.keys_create("ci", user="a@b.c", expires=timedelta(days=1), rpm=5, models=["m"])
    assert server.last["method"] == "POST"
    assert server.last["body"] == {
        "name": "ci",
        "user": "a@b.c",
        "expires_in": 86400.0,
        "rpm": 5,
        "tpm": None,
        "models": ["m"],
    }
    admin.keys_update("abcdef12", rpm=None, tpm=UNSET, models=["x"], expires_at=UNSET)
    assert (server.last["method"], server.last["path"]) == ("PATCH", "/admin/v1/keys/abcdef12")
    assert server.last["body"] == {"rpm": None, "models": ["x"]}  # left out = unchanged
    admin.keys_revoke("abcdef12")
    assert (server.last["method"], server.last["path"]) == (
        "POST",
        "/admin/v1/keys/abcdef12/revoke",
    )
    admin.keys_rotate("abcdef12")
    assert server.last["path"] == "/admin/v1/keys/abcdef12/rotate"
    admin.users_show("a+b@c.d")
    assert server.last["path"] == "/admin/v1/users/a%2Bb%40c.d"
    admin.users_set_role("a@b.c", "admin")
    assert (server.last["method"], server.last["body"]) == ("PATCH", {"role": "admin"})
    admin.users_disable("a@b.c")
    assert server.last["path"] == "/admin/v1/users/a%40b.c/disable"
    server.reply = (200, {"object": "list", "data": [{"n": 1}]}, {})
    since = datetime(2026, 12, 1, tzinfo=UTC)
    assert admin.usage_stats(since=since, by="model", status=429) == [{"n": 1}]
    assert server.last["path"] == (
        "/admin/v1/usage/stats?since=2026-12-01T00%3A00%3A00%2B00%3A00&by=model&status=429"
    )
    admin.usage_recent(limit=5)
    assert server.last["path"] == "/admin/v1/usage/recent?limit=5"
    admin.audit_list(action="keys.*", limit=10)
    assert server.last["path"] == "/admin/v1/audit?limit=10&action=keys.%2A"
    admin.providers_status()
    assert server.last["path"] == "/admin/v1/providers"


def test_a_pasted_whole_secret_is_sent_as_its_prefix(server: Recorder, admin: RemoteAdmin) -> None:
    """The secret never lands in a URL (and so in no access log): its prefix names the key."""
    secret = "llmgw_" + "A" * 43
    server.reply = (200, {"id": "k"}, {})
    admin.keys_show(secret)
    assert server.last["path"] == "/admin/v1/keys/llmgw_AAAAAA"
    server.reply = (200, {"object": "list", "data": []}, {})
    admin.usage_stats(key=secret)
    assert "A" * 10 not in server.last["path"]


def test_whoami_says_remote_and_where(server: Recorder, admin: RemoteAdmin) -> None:
    server.reply = (200, {"actor": "a@b.c", "role": "admin", "mode": "local", "url": None}, {})
    assert admin.whoami() == {
        "actor": "a@b.c",
        "role": "admin",
        "mode": "remote",
        "url": server.url,
    }


@pytest.mark.parametrize(
    ("status", "etype", "code", "cls", "exit_code"),
    [
        (400, "invalid_request_error", None, UsageError, 2),
        (401, "authentication_error", "invalid_api_key", AuthError, 6),
        (403, "permission_error", "permission_denied", PermissionDenied, 6),
        (404, "not_found_error", None, NotFound, 4),
        (409, "conflict_error", None, Conflict, 5),
        (429, "rate_limit_error", "rate_limit_exceeded", RateLimited, 7),
        (503, "api_error", "database_unavailable", DatabaseError, 3),
        (503, "api_error", "unavailable", Unavailable, 9),
        (500, "api_error", None, LlmgwError, 1),
    ],
)
def test_the_error_envelope_becomes_the_class_local_mode_raises(
    server: Recorder,
    admin: RemoteAdmin,
    status: int,
    etype: str,
    code: str | None,
    cls: type[LlmgwError],
    exit_code: int,
) -> None:
    envelope = {
        "error": {"message": "the server's words", "type": etype, "param": None, "code": code}
    }
    server.reply = (status, envelope, {"retry-after": "3"})
    with pytest.raises(LlmgwError) as info:
        admin.keys_show("abcdef12")
    assert type(info.value) is cls
    assert info.value.message == "the server's words"
    assert info.value.exit_code == exit_code
    if cls is RateLimited:
        assert info.value.retry_after == 3.0


def test_an_answer_that_is_no_envelope_still_maps_by_status() -> None:
    exc = error_from_answer(404, b"<html>", "http://h")
    assert isinstance(exc, NotFound)
    assert "no admin API" in exc.message
    assert isinstance(error_from_answer(403, None, "http://h"), PermissionDenied)
    assert isinstance(error_from_answer(503, None, "http://h"), Unavailable)


def test_a_server_that_is_not_running_is_one_clear_error_exit_9() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with RemoteAdmin(url, TOKEN) as ops, pytest.raises(Unavailable) as info:
        ops.users_list()
    assert info.value.exit_code == 9
    assert info.value.message == f"cannot reach the llmgw server at {url}: connection refused"
    assert "llmgw serve" in (info.value.hint or "")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_server_that_never_answers_times_out_exit_9() -> None:
    with socket.socket() as listener:  # accepts connections (the backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        ops = RemoteAdmin(url, TOKEN, read_timeout=0.3)
        with pytest.raises(Unavailable) as info:
            ops.keys_list()
        ops.close()
    assert info.value.message == f"could not get an answer from the llmgw server at {url} in time"


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://h", "http://", "http://h:port"])
def test_a_url_that_is_not_http_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError) as info:
        RemoteAdmin(url, TOKEN)
    assert info.value.exit_code == 2


def test_no_token_or_a_malformed_one_is_refused_before_any_request() -> None:
    with pytest.raises(UsageError) as info:
        RemoteAdmin("http://127.0.0.1:1", None)
    assert "LLMGW_TOKEN" in (info.value.hint or "")
    with pytest.raises(UsageError) as info:
        RemoteAdmin("http://127.0.0.1:1", TOKEN + "\r\nX-Evil: 1")
    assert TOKEN not in str(info.value) + (info.value.hint or "")


def test_the_token_and_url_credentials_never_show(server: Recorder) -> None:
    """Neither the token nor a password in the URL appear in repr, errors or hints."""
    url = server.url.replace("http://", "http://me:pa55word@") + "/?t=zzz"
    ops = RemoteAdmin(url, TOKEN)
    assert TOKEN not in repr(ops) and "pa55word" not in repr(ops)
    server.reply = (
        401,
        {"error": {"message": "invalid API key", "type": "authentication_error"}},
        {},
    )
    with pytest.raises(AuthError) as info:
        ops.keys_list()
    ops.close()
    port = _free_port()
    dead = RemoteAdmin(f"http://me:pa55word@127.0.0.1:{port}", TOKEN)
    with pytest.raises(Unavailable) as gone:
        dead.keys_list()
    dead.close()
    for exc in (info.value, gone.value):
        shown = f"{exc} {exc.hint} {exc!r}"
        assert TOKEN not in shown and "pa55word" not in shown and "zzz" not in shown
