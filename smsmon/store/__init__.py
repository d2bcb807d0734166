"""The alert store: alerts, consent events and registry state from Kafka in SQL (docs/store.md)."""
