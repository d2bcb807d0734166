"""The store's PostgreSQL fixture (Debian's server, started once per session)."""

from tests.integration.store.conftest import postgres

__all__ = ["postgres"]
