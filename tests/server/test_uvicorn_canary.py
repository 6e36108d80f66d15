"""Canary for the uvicorn internals llmgw builds on: fails loudly when they change.

``server/receipt.py`` subclasses uvicorn's httptools protocol (request-receipt deadlines, header
limits) and reads its private state; ``server/serving.py`` subclasses ``uvicorn.Server``. Both
were checked against the uvicorn range pinned in pyproject.toml. When uvicorn changes a method
overridden or copied there, or drops an attribute read there, this fails and names it: re-read
the new uvicorn code against those modules, then update the fingerprints below and the pin.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import tomllib
from pathlib import Path
from typing import Any

import uvicorn
import uvicorn.server
from packaging.specifiers import SpecifierSet
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

REPO = Path(__file__).resolve().parents[2]

# sha256 (first 16 hex digits) of the source of each uvicorn method that llmgw overrides, copies
# (ReceiptTimeoutProtocol.data_received is uvicorn's plus a byte count) or extends via super().
FINGERPRINTS = {
    (HttpToolsProtocol, "__init__"): "4f08999410347141",
    (HttpToolsProtocol, "connection_made"): "6efb565ff3d36b91",
    (HttpToolsProtocol, "data_received"): "010a7ae59a5d3b1a",
    (HttpToolsProtocol, "on_message_begin"): "96d377fdc7c2baef",
    (HttpToolsProtocol, "on_headers_complete"): "1ea8589acfad92d8",
    (HttpToolsProtocol, "on_message_complete"): "1fbad42dc31fc01f",
    (RequestResponseCycle, "__init__"): "4d2f220910c33c12",
    (uvicorn.server.Server, "startup"): "2aa1d70a244bfcf2",
    (uvicorn.server.Server, "handle_exit"): "553276efa26e09ea",
}

# State read or called by server/receipt.py and server/serving.py, by the class that sets it.
USED: dict[type[Any], tuple[str, ...]] = {
    HttpToolsProtocol: (
        "cycle",
        "scope",
        "flow",
        "server_state",
        "timeout_keep_alive",
        "transport",
        "loop",
        "client",
        "parser",
        "headers",
        "url",
        "logger",
        "_unset_keepalive_if_required",
        "send_400_response",
        "_should_upgrade",
        "handle_websocket_upgrade",
        "_unsupported_upgrade_warning",
    ),
    RequestResponseCycle: (
        "scope",
        "more_body",
        "response_started",
        "response_complete",
        "waiting_for_100_continue",
        "disconnected",
        "message_event",
    ),
    FlowControl: ("read_paused",),
    uvicorn.server.ServerState: ("connections", "default_headers"),
    uvicorn.server.Server: ("_captured_signals", "config", "should_exit"),
}


def _fingerprint(obj: object) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]  # type: ignore[arg-type]


def test_uvicorn_is_inside_the_pinned_range() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if re.match(r"uvicorn\b", d))
    pinned = SpecifierSet(spec.split("]", 1)[-1].split(";")[0].strip())
    assert uvicorn.__version__ in pinned, (
        f"uvicorn {uvicorn.__version__} is outside {pinned}: server/receipt.py was checked "
        "against that range only"
    )


def test_the_uvicorn_methods_llmgw_overrides_are_the_ones_it_was_checked_against() -> None:
    changed = [
        f"{cls.__name__}.{name}"
        for (cls, name), digest in FINGERPRINTS.items()
        if _fingerprint(getattr(cls, name)) != digest
    ]
    assert not changed, (
        f"uvicorn {uvicorn.__version__} changed {', '.join(changed)}: re-check "
        "server/receipt.py (ReceiptTimeoutProtocol) and server/serving.py (GatewayServer) "
        "against the new code, then update FINGERPRINTS and the uvicorn pin"
    )


def test_the_uvicorn_state_llmgw_reads_still_exists() -> None:
    missing = []
    for cls, names in USED.items():
        source = inspect.getsource(cls)
        for name in names:
            if not hasattr(cls, name) and f"self.{name}" not in source:
                missing.append(f"{cls.__name__}.{name}")
    assert not missing, (
        f"uvicorn {uvicorn.__version__} no longer has {', '.join(missing)}, which "
        "server/receipt.py or server/serving.py reads"
    )
