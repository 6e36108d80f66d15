"""Yandex Cloud IAM tokens for a service account: a PS256 JWT from its authorized key, exchanged."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization

from llmgw.errors import ConfigError, UpstreamError
from llmgw.providers.tokens import AccessToken, token_endpoint_error
from llmgw.providers.transport import parse_json, redact

__all__ = [
    "IAM_AUDIENCE",
    "IAM_REFRESH_SECONDS",
    "ServiceAccountTokens",
    "load_service_account_key",
]

IAM_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
"""The JWT audience Yandex requires, whatever URL the exchange is sent to."""
IAM_REFRESH_SECONDS = 3600.0
_FRACTION = re.compile(r"\.(\d{6})\d+")


def load_service_account_key(path: Path) -> dict[str, str]:
    """A ``yc iam key create`` JSON file: ``id``, ``service_account_id``, ``private_key``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot read the service account key file {path}: {exc.strerror}"
        ) from None
    except ValueError:
        raise ConfigError(f"{path}: not a JSON service account key file") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("id", "service_account_id", "private_key")
    ):
        raise ConfigError(
            f"{path}: a service account key needs id, service_account_id and private_key",
            hint="create one with `yc iam key create --service-account-name NAME -o key.json`",
        )
    try:
        serialization.load_pem_private_key(data["private_key"].encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{path}: private_key is not an unencrypted PEM private key",
            hint="use the key file exactly as `yc iam key create` wrote it",
        ) from None
    return {k: data[k] for k in ("id", "service_account_id", "private_key")}


def _expires(value: Any) -> float:
    """``expiresAt`` (RFC 3339, maybe with nanoseconds) as unix seconds; 1 h from now if unreadable."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(
                _FRACTION.sub(r".\1", value).replace("Z", "+00:00")
            ).timestamp()
        except ValueError:
            pass
    return time.time() + IAM_REFRESH_SECONDS


class ServiceAccountTokens:
    """Fetches IAM tokens for one service account (use with ``TokenCache``)."""

    def __init__(
        self,
        key: dict[str, str],
        *,
        iam_url: str,
        verify: Any,
        connect_timeout: float,
        timeout: float,
        provider: str,
    ) -> None:
        self._sa_key = key
        self.iam_url = iam_url
        self.name = provider
        self._verify = verify
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._http: httpx.AsyncClient | None = None

    @property
    def private_key(self) -> str:
        """The PEM private key (for redaction lists only)."""
        return self._sa_key["private_key"]

    async def fetch(self) -> AccessToken:
        """Sign a fresh JWT (1 h) and exchange it for an IAM token."""
        now = int(time.time())
        claims = {
            "iss": self._sa_key["service_account_id"],
            "aud": IAM_AUDIENCE,
            "iat": now,
            "exp": now + 3600,
        }
        try:
            signed = jwt.encode(
                claims,
                self._sa_key["private_key"],
                algorithm="PS256",
                headers={"kid": self._sa_key["id"]},
            )
        except (ValueError, TypeError, jwt.PyJWTError):
            raise ConfigError(
                f"provider {self.name!r}: the service account private key cannot sign a JWT"
            ) from None
        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=self._verify, timeout=self._timeout, follow_redirects=False, trust_env=False
            )
        try:
            resp = await self._http.post(self.iam_url, json={"jwt": signed})
        except httpx.HTTPError as exc:
            raise token_endpoint_error(exc, "Yandex IAM", self.name) from None
        if resp.status_code != 200:
            detail = ""
            try:
                msg = orjson.loads(resp.content).get("message")
                if isinstance(msg, str):
                    detail = ": " + redact(msg, [signed], limit=200)
            except (orjson.JSONDecodeError, AttributeError):
                pass
            raise UpstreamError(
                f"Yandex IAM refused to issue a token (HTTP {resp.status_code}{detail})",
                provider=self.name,
                hint="check service_account_key_file and that the key is not revoked",
            )
        data = parse_json(self.name, resp.status_code, resp.headers, resp.content)
        token = data.get("iamToken") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamError("Yandex IAM answered without iamToken", provider=self.name)
        return AccessToken(token, _expires(data.get("expiresAt")))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
