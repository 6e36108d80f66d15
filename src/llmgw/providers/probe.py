"""One real round trip to a configured provider, with a diagnosis of what failed.

``llmgw providers test`` and the admin operation ``providers_test`` (``t`` on the dashboard's
Providers screen, ``POST /admin/v1/providers/{name}/test``) both run ``probe``: DNS, TCP and TLS
to the API (and the token host: GigaChat's OAuth, Yandex IAM with a service-account key),
trusting what the server trusts, then a 1-token chat (or a model listing when no chat model is
known). Failures are ``LlmgwError``s worded as a diagnosis: auth rejected, TLS failure,
connection refused, timeout...
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmgw.config import ProviderConfig, Settings
from llmgw.errors import (
    AuthError,
    ConfigError,
    LlmgwError,
    NotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from llmgw.providers.tls import ssl_context

if TYPE_CHECKING:
    from llmgw.providers.registry import SecretResolver

__all__ = ["DEFAULT_AUTH", "DEFAULT_BASE", "DEFAULT_IAM", "probe", "probe_urls"]

DEFAULT_BASE = {
    "openai": "https://api.openai.com/v1",
    "gigachat": "https://gigachat.devices.sberbank.ru/api/v1",
    "yandexgpt": "https://llm.api.cloud.yandex.net",
}
"""Public endpoints each kind talks to when ``base_url`` is not set (for the network checks)."""
DEFAULT_AUTH = {"gigachat": "https://ngw.devices.sberbank.ru:9443/api/v2/oauth"}
DEFAULT_IAM = "https://iam.api.cloud.yandex.net/iam/v1/tokens"


def probe_urls(cfg: ProviderConfig) -> list[str]:
    """The API's URL and, where the kind needs one, its token host's."""
    urls = [cfg.base_url or DEFAULT_BASE[cfg.kind]]
    auth = cfg.auth_url or DEFAULT_AUTH.get(cfg.kind)
    if cfg.kind == "yandexgpt" and cfg.service_account_key_file:
        auth = cfg.iam_url or DEFAULT_IAM
    if auth:
        urls.append(str(auth))
    return urls


async def _check_network(url: str, cfg: ProviderConfig, limit: float) -> None:
    """DNS, TCP and TLS to ``url``'s host; raise with a precise diagnosis."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    where = f"{host}:{port}"
    # The server's own builder (system CAs plus ca_bundle): the test trusts what `serve` trusts.
    ctx = ssl_context(cfg.ca_bundle) if tls else None
    try:
        await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), limit
        )
    except (socket.gaierror, TimeoutError):
        raise UpstreamError(
            f"{cfg.name}: DNS lookup failed for {host}",
            hint="check base_url and the network/DNS settings",
        ) from None
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
    except ConnectionRefusedError:
        raise UpstreamError(
            f"{cfg.name}: connection refused by {where}",
            hint="is the upstream running on that port?",
        ) from None
    except TimeoutError:
        raise UpstreamTimeout(
            f"{cfg.name}: timeout: no TCP connection to {where} within {limit:g}s",
            hint="a firewall or proxy may drop the traffic",
        ) from None
    except OSError as exc:
        raise UpstreamError(f"{cfg.name}: cannot connect to {where}: {exc.strerror}") from None
    try:
        if ctx is not None:
            await asyncio.wait_for(writer.start_tls(ctx, server_hostname=host), limit)
    except ssl.SSLCertVerificationError as exc:
        raise UpstreamError(
            f"{cfg.name}: TLS failure: certificate of {where} not trusted ({exc.verify_message})",
            hint="GigaChat needs the Russian Trusted Root CA: set the provider's CA bundle path",
        ) from None
    except (ssl.SSLError, TimeoutError, OSError) as exc:
        raise UpstreamError(
            f"{cfg.name}: TLS failure with {where}: {type(exc).__name__}",
            hint="check that the URL is https on a TLS port",
        ) from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _round_trip(
    settings: Settings, cfg: ProviderConfig, model: str | None, secrets: SecretResolver | None
) -> dict[str, Any]:
    from llmgw.providers.base import CallContext
    from llmgw.providers.registry import SecretResolver, build_providers
    from llmgw.schemas import ChatRequest

    only = settings.model_copy(update={"providers": [cfg]})
    providers = build_providers(only, secrets if secrets is not None else SecretResolver())
    provider = providers[cfg.name]
    try:
        start = time.perf_counter()
        chat_model = model or next((m for m in cfg.models if "embed" not in m), None)
        if chat_model is None:
            cards = await provider.list_models()
            return {
                "check": "list_models",
                "latency_ms": round((time.perf_counter() - start) * 1000, 1),
                "models": len(cards),
            }
        name, _, version = chat_model.partition(":")
        req = ChatRequest.model_validate(
            {
                "model": chat_model,
                "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1,
            }
        )
        ctx = CallContext(request_id=uuid.uuid4().hex, model=name, version=version or None)
        resp = await provider.chat(req, ctx)
        return {
            "check": "chat",
            "latency_ms": round((time.perf_counter() - start) * 1000, 1),
            "model": resp.model or chat_model,
        }
    finally:
        await provider.aclose()


def _diagnose(cfg: ProviderConfig, exc: LlmgwError) -> LlmgwError:
    """Reword an adapter's error as a diagnosis of the test."""
    if isinstance(exc, AuthError) or "401" in exc.message or "403" in exc.message:
        hint = f"update it with `llmgw providers set-secret {cfg.name}`"
        if cfg.api_key_env:
            hint += f" or ${cfg.api_key_env} (the env variable wins)"
        return AuthError(f"{cfg.name}: auth rejected by the upstream: {exc.message}", hint=hint)
    if isinstance(exc, UpstreamTimeout):
        return UpstreamTimeout(f"{cfg.name}: timeout: {exc.message}", hint=exc.hint)
    if isinstance(exc, RateLimited):
        return RateLimited(f"{cfg.name}: rate limited: {exc.message}", retry_after=exc.retry_after)
    if isinstance(exc, ConfigError):
        return exc
    return UpstreamError(f"{cfg.name}: {exc.message}", hint=exc.hint)


async def probe(
    settings: Settings,
    name: str,
    *,
    model: str | None = None,
    check_seconds: float = 10.0,
    secrets: SecretResolver | None = None,
) -> dict[str, Any]:
    """Test provider ``name`` of ``settings``: ``{"provider", "ok": True, "check": "chat" |
    "list_models", "latency_ms", "model" | "models"}``, or a diagnosed ``LlmgwError``
    (``NotFound`` when no provider has that name). ``check_seconds`` bounds each network check;
    the round trip gets three times that. ``secrets`` (default: environment and keyring) may
    also answer stored providers' credentials."""
    cfg = settings.provider(name)
    if cfg is None:
        known = ", ".join(p.name for p in settings.providers) or "none configured"
        raise NotFound(f"no provider named {name!r} ({known})", hint="see `llmgw providers list`")
    for url in probe_urls(cfg):
        await _check_network(url, cfg, check_seconds)
    try:
        result = await asyncio.wait_for(
            _round_trip(settings, cfg, model, secrets), check_seconds * 3
        )
    except TimeoutError:
        raise UpstreamTimeout(
            f"{name}: timeout: no answer within {check_seconds * 3:g}s", hint="try --timeout"
        ) from None
    except LlmgwError as exc:
        raise _diagnose(cfg, exc) from None
    return {"provider": name, "ok": True, **result}
