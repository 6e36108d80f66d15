"""The alert history service: Alertmanager webhooks in, deduplicated history, LLM classification.

``payload`` parses a webhook delivery, ``store`` keeps it (one transaction, idempotent),
``queue`` is the durable job table the ``worker`` drains, ``classifier`` asks the gateway's own
router, ``modes`` renders what a processing mode forwards, ``queries`` serves the API, CLI and
dashboard, ``retention`` deletes old history. No HTTP framework and no terminal in here.
"""
