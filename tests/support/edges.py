"""A chain's edge registered on the shop's core, for the core-side tests."""

from __future__ import annotations

from tests.support.shop import Shop
from watchkeeper.config import Settings
from watchkeeper.governance import edges as chain


def issue_code(shop: Shop, settings: Settings, site: str = "Leeds", name: str | None = None) -> str:
    """Register an edge for ``site`` as alice (`edges add`); its one-time code."""
    with shop.tx() as tx:
        added = chain.add_edge(
            tx.session,
            shop.store.keys,
            tx.organisation,
            tx.user("alice"),
            site,
            name,
            settings.edge,
        )
        return added.code
