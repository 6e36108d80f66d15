"""Routing: model names to candidates, circuit breakers, health, retries and the router."""
