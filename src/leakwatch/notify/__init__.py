"""Notifications that are never lost: a durable outbox in DuckDB, dispatchers to ticketing,
Salesforce and webhooks, and the triggers that decide who is told what, when."""
