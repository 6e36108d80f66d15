"""``llmgw login`` (the browser flow) run through the real CLI entry point against a real llmgw
server: Python's ``webbrowser`` starts a registered browser whose ``open`` acts like a person at
a browser. It reads the authorization request the CLI made (checked: code flow, S256, state, a
127.0.0.1 loopback redirect on the listener's port, OAUTH-1/OAUTH-6 from the client's side) and
comes back to the loopback listener over real HTTP, with a code, an error or a wrong state.

The login and consent pages between are idweb's (driven in headless Chromium by their tests);
here the code comes from the same core call the consent page makes (``identity.codes.issue_code``).
"""

from __future__ import annotations

import threading
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from .conftest import free_port


@dataclass
class Visit:
    """What the browser saw and answered."""

    url: str
    params: dict[str, str]
    loopback_status: int | None = None
    page: str = ""


@dataclass
class ScriptedBrowser(webbrowser.BaseBrowser):
    """A browser for ``webbrowser``: ``behave(params) -> query`` decides the redirect's query."""

    behave: Callable[[dict[str, str]], dict[str, str] | None]
    visits: list[Visit] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__("scripted")

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        visit = Visit(url, params)
        self.visits.append(visit)
        query = self.behave(params)
        if query is not None:
            r = httpx.get(f"{params['redirect_uri']}?{urlencode(query)}", timeout=10)
            visit.loopback_status, visit.page = r.status_code, r.text
        self.done.set()
        return True


@pytest.fixture
def use_browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[ScriptedBrowser], None]]:
    """Make ``webbrowser.get()`` return the given browser (as ``$BROWSER`` would)."""

    def install(browser: ScriptedBrowser) -> None:
        monkeypatch.setattr(webbrowser, "get", lambda using=None: browser)

    yield install


@pytest.fixture
def server_url(make_settings: Any, emulator: Any, test_engine: Any) -> Iterator[str]:
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    port = free_port()
    settings = make_settings(emulator.url, host="127.0.0.1", port=port)
    server = serve_in_thread(create_app(settings), port=port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _checked(params: dict[str, str], url: str) -> None:
    """OAUTH-1/OAUTH-6 (client side): what the CLI asks the authorization endpoint for."""
    assert urlsplit(url).path == "/oauth/authorize" and url.startswith("http://127.0.0.1:")
    assert params["response_type"] == "code" and params["client_id"] == "llmgw-cli"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 32
    redirect = urlsplit(params["redirect_uri"])
    assert redirect.scheme == "http" and redirect.hostname == "127.0.0.1"
    assert redirect.port and redirect.path == "/callback"


def test_a_denied_consent_ends_the_login_with_exit_6(
    cli: Any, server_url: str, use_browser: Any, ring: Any, home: Any
) -> None:
    browser = ScriptedBrowser(lambda p: {"error": "access_denied", "state": p["state"]})
    use_browser(browser)
    r = cli("login", "--url", server_url, "--timeout", "20")
    assert r.exit_code == 6, r.stderr
    assert "Error: the server refused: access_denied" in r.stderr
    assert "allow access" in r.stderr
    _checked(browser.visits[0].params, browser.visits[0].url)
    assert browser.done.wait(10)  # the browser runs in a thread of its own
    assert browser.visits[0].loopback_status == 200
    assert "Login not completed" in browser.visits[0].page
    assert "Opening your browser" in r.stderr and server_url + "/oauth/authorize?" in r.stderr
    assert ring.data == {} and not (home / "logins.json").exists()


def test_a_redirect_with_another_state_is_ignored_and_the_login_times_out(
    cli: Any, server_url: str, use_browser: Any, ring: Any
) -> None:
    """An attacker's redirect (their own code, a state they cannot know) neither logs the user
    in as the attacker nor ends the wait; the timeout says it was seen."""
    browser = ScriptedBrowser(lambda p: {"code": "attacker-code", "state": "guessed"})
    use_browser(browser)
    r = cli("login", "--url", server_url, "--timeout", "2")
    assert r.exit_code == 6, r.stderr
    assert "no answer from the browser within 2 s" in r.stderr
    assert "1 answer(s) with a wrong state were ignored" in r.stderr
    assert browser.done.wait(10)
    assert browser.visits[0].loopback_status == 400
    assert ring.data == {}


def test_without_a_browser_the_address_is_printed(
    cli: Any, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def none(using: str | None = None) -> webbrowser.BaseBrowser:
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", none)
    r = cli("login", "--url", server_url, "--timeout", "1", "--store-file")
    assert r.exit_code == 6
    assert "Open this address in a browser on this machine to log in:" in r.stderr
    line = next(x.strip() for x in r.stderr.splitlines() if "/oauth/authorize?" in x)
    params = {k: v[0] for k, v in parse_qs(urlsplit(line).query).items()}
    _checked(params, line)
