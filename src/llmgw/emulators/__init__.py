"""Local servers that speak real services' wire formats (``llmgw emulate ...``)."""
