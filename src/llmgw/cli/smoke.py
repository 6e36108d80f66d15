"""``llmgw smoke``: a post-deploy check of a running gateway, one line per check.

Health (``/healthz``), readiness (``/readyz``), one real chat completion with a smoke key (1 token),
and ``/metrics`` (served, with llmgw's series). Behind a load balancer each request may reach
another instance: run it against each instance's own address to check them all. Exit 0 when every check passes, 9
when one fails; the key is never printed. docs/deployment.md#post-deploy-smoke-check
"""

from __future__ import annotations

import ssl
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from llmgw.cli.output import emit_json
from llmgw.errors import Unavailable, UsageError

__all__ = ["smoke"]


@dataclass
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    status: int | None = None
    ms: float | None = None
    detail: str = ""
    skipped: bool = False

    def line(self) -> str:
        """``ok   chat      200  12 ms  gpt-4o-mini answered`` (FAIL / skip likewise)."""
        word = "skip" if self.skipped else ("ok" if self.ok else "FAIL")
        status = "" if self.status is None else str(self.status)
        ms = "" if self.ms is None else f"{self.ms:.0f} ms"
        return f"{word:<5}{self.name:<9}{status:<5}{ms:>8}  {self.detail}".rstrip()


def _error_text(response: Any) -> str:
    """The OpenAI envelope's message, else the start of the body (one line)."""
    try:
        body = response.json()
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict) and err.get("message"):
                return str(err["message"])
            if body.get("problems"):
                return "; ".join(str(p) for p in body["problems"])
    except ValueError:
        pass
    return " ".join(response.text.split())[:200]


def _run(client: Any, name: str, method: str, path: str, **kw: Any) -> tuple[Check, Any]:
    """One request; a transport error is a failed check, not an exception."""
    import httpx

    start = time.perf_counter()
    try:
        response = client.request(method, path, **kw)
    except httpx.HTTPError as exc:
        ms = (time.perf_counter() - start) * 1000
        reason = str(exc) or type(exc).__name__
        return Check(name, False, None, ms, f"{type(exc).__name__}: {reason}"), None
    ms = (time.perf_counter() - start) * 1000
    ok = response.status_code == 200
    return Check(name, ok, response.status_code, ms, "" if ok else _error_text(response)), response


def run_checks(
    client: Any, key: str | None, model: str | None, metrics_token: str | None
) -> list[Check]:
    """healthz, readyz, chat (skipped without a key), metrics: every check runs, in order."""
    checks: list[Check] = []
    health, _ = _run(client, "healthz", "GET", "/healthz")
    checks.append(health)
    ready, _ = _run(client, "readyz", "GET", "/readyz")
    checks.append(ready)

    if key is None:
        checks.append(Check("chat", True, detail="no --key (or LLMGW_SMOKE_KEY)", skipped=True))
    else:
        auth = {"Authorization": f"Bearer {key}"}
        chosen = model
        if chosen is None:  # the first model the key may use
            listed, response = _run(client, "chat", "GET", "/v1/models", headers=auth)
            data = response.json().get("data") if listed.ok and response is not None else None
            if not data:
                listed.ok = False
                listed.detail = listed.detail or "GET /v1/models listed no model: pass --model"
                checks.append(listed)
            else:
                chosen = str(data[0]["id"])
        if chosen is not None:
            body = {
                "model": chosen,
                "messages": [{"role": "user", "content": "llmgw smoke test: answer ok"}],
                "max_tokens": 1,
            }
            chat, response = _run(
                client, "chat", "POST", "/v1/chat/completions", json=body, headers=auth
            )
            if chat.ok and response is not None:
                choices = response.json().get("choices") or []
                if not choices or "message" not in choices[0]:
                    chat.ok, chat.detail = False, "200 without a choice"
                else:
                    chat.detail = f"{chosen} answered"
            checks.append(chat)

    headers = {"Authorization": f"Bearer {metrics_token}"} if metrics_token else {}
    metrics, response = _run(client, "metrics", "GET", "/metrics", headers=headers)
    if metrics.ok and response is not None:
        text = response.text
        if "llmgw_requests_total" not in text:
            metrics.ok, metrics.detail = False, "no llmgw_requests_total series"
        else:
            metrics.detail = f"{sum(1 for x in text.splitlines() if x and x[0] != '#')} samples"
    checks.append(metrics)
    return checks


def smoke(
    url: Annotated[
        str,
        typer.Option("--url", help="The deployment's base URL, e.g. https://llm.example.com."),
    ],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            envvar="LLMGW_SMOKE_KEY",
            help="API key for the chat check (or LLMGW_SMOKE_KEY); without one the chat is skipped.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model for the chat check [default: the first in /v1/models]."),
    ] = None,
    metrics_token: Annotated[
        str | None,
        typer.Option(
            "--metrics-token",
            envvar="LLMGW_SMOKE_METRICS_TOKEN",
            help="server.metrics_token, when /metrics needs one (or LLMGW_SMOKE_METRICS_TOKEN).",
            show_default=False,
        ),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option("--ca", help="PEM CA file to trust (a private or self-signed certificate)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds for each request.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
) -> None:
    """Check a deployment end to end: /healthz, /readyz, a chat completion, /metrics.

    One line per check (ok, FAIL or skip, the HTTP status, the time, what was seen). The chat
    sends one message with max_tokens 1 using a smoke key (give it a small budget); every check
    runs even after a failure. Exit 0 when all pass, 9 when any fails, 2 for bad usage.
    """
    import httpx

    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must start with http:// or https://, got {url!r}")
    verify: ssl.SSLContext | bool = True
    if ca is not None:
        try:
            verify = ssl.create_default_context(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--ca {ca}: cannot load it ({exc})") from None
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, verify=verify) as client:
        checks = run_checks(client, key, model, metrics_token)
    if as_json:
        failed = [c.name for c in checks if not c.ok]
        emit_json({"url": url, "ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        for c in checks:
            typer.echo(c.line())
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise Unavailable(
            f"smoke check of {url} failed: {', '.join(failed)}",
            hint="see the lines above; /readyz lists what the server is missing",
        )
