"""``Transport`` plus a reader for newline-delimited JSON streams (the YandexGPT native REST stream).

The native stream is not SSE: each line is one JSON object and the stream ends when the
connection closes. Same timeouts, cap, redirect and error rules as ``Transport.open_stream``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from llmgw.errors import UpstreamError
from llmgw.providers.transport import (
    MAX_ERROR_BODY_BYTES,
    MAX_EVENT_BYTES,
    Transport,
    UpstreamStatus,
)

__all__ = ["LineTransport"]


class LineTransport(Transport):
    """A ``Transport`` that can also stream newline-delimited JSON."""

    async def open_lines(
        self, path: str, body: bytes | dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        """``POST`` and yield each non-blank line of the body until the upstream closes it.

        A non-2xx answer raises ``UpstreamStatus`` before anything is yielded; closing the
        generator early closes the upstream connection and frees the slot.
        """
        session = self._get_session()
        data = orjson.dumps(body) if isinstance(body, dict) else body
        hdrs = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        deadline = await self._acquire()
        resp: aiohttp.ClientResponse | None = None
        finished = False
        phase = "headers"
        try:
            try:
                resp = await session.request(
                    "POST",
                    self.url(path),
                    data=data,
                    headers=hdrs,
                    allow_redirects=False,
                    timeout=self._timeout(deadline),
                )
                if 300 <= resp.status < 400:
                    raise self._redirect(resp.status)
                phase = "body"
                self._switch_to_idle(resp)
                if resp.status >= 300:
                    err = await self._read(resp, MAX_ERROR_BODY_BYTES)
                    raise UpstreamStatus(self.provider, resp.status, resp.headers, err)
            except UpstreamError:
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._error(exc, phase) from None
            buf = bytearray()
            while True:
                try:
                    chunk = await resp.content.readany()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise self._error(exc, "body") from None
                if not chunk:
                    break
                buf += chunk
                while (i := buf.find(b"\n")) >= 0:
                    line = bytes(buf[:i]).strip()
                    del buf[: i + 1]
                    if line:
                        yield line
                if len(buf) > MAX_EVENT_BYTES:
                    raise UpstreamError(
                        f"upstream {self.provider} sent an oversized stream line",
                        provider=self.provider,
                    )
            if buf.strip():
                yield bytes(buf).strip()
            finished = True
        finally:
            if resp is not None:
                if finished:
                    resp.release()
                else:
                    resp.close()
            self._release()
