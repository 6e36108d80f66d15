"""The pages' Prometheus counters, registered when the app is built (the pages load later)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["WebCounters"]


class WebCounters:
    """Sign-ins, device verifications and consents decided on the pages, by outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.logins_total = Counter(
            "llmgw_web_logins",
            "Password sign-ins on the web pages by outcome (success, failure, throttled).",
            ["outcome"],
            registry=registry,
        )
        self.device_total = Counter(
            "llmgw_web_device_verifications",
            "Device-code verifications by outcome (approved, denied, unknown, throttled).",
            ["outcome"],
            registry=registry,
        )
        self.consents_total = Counter(
            "llmgw_web_consents",
            "Authorization requests decided on the consent page (allowed, denied).",
            ["outcome"],
            registry=registry,
        )
