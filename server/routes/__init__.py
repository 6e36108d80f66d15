"""Route groups, one module each; what they share lives beside them in ``llmgw.server``."""
