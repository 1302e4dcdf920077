"""End-to-end tests reuse the integration tests' local stack fixture."""

from integration.conftest import infra

__all__ = ["infra"]
