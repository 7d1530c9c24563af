"""Fixtures of the paper exchange's integration tests: the real process on a free port."""

from tests.paper_exchange_fixture import paper_exchange, paper_exchange_factory

__all__ = ["paper_exchange", "paper_exchange_factory"]
