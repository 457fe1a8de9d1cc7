"""A/B variants of a campaign (issue 12, section 2), recomputable by any other system.

`bucket = int.from_bytes(sha256(f"variant:{campaign_id}:{customer_id}")[:8], "big") % 10000`;
the variants take consecutive ranges of `weight * 10000` buckets in the order
the rules file lists them. The prefix `variant:` makes this draw independent
of the holdout's (`holdout.py` hashes the same pair without it), and the
holdout is decided first: control customers get no variant. Boundaries are
computed in decimal on the weights as written, like the holdout's threshold,
so `weight: 0.3` is exactly 3000 buckets.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .holdout import BUCKETS, draw

if TYPE_CHECKING:
    from .config import Campaign

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$"


class Variant(BaseModel):
    """One arm of an A/B test: its share, and what it changes about the campaign's offer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=_ID)
    weight: float = Field(gt=0.0, le=1.0)
    offer_code: str | None = Field(default=None, min_length=1, max_length=64)
    channels: list[str] | None = Field(default=None, min_length=1)
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)


def weight_problems(variants: list[Variant]) -> list[str]:
    """Why a campaign's variant list is unusable: ids repeat, or weights do not sum to 1."""
    ids = [v.id for v in variants]
    problems = [f"variants[{i}].id: {v!r} is used twice" for i, v in enumerate(ids) if v in ids[:i]]
    total = sum(Decimal(repr(v.weight)) for v in variants)
    if variants and total != 1:
        problems.append(f"variants: weights sum to {total}, expected 1")
    return problems


def variant_bucket(campaign_id: str, customer_id: str) -> int:
    """The customer's variant bucket in `0..9999` (the formula in the module docstring)."""
    return _bucket(campaign_id, customer_id)


@lru_cache(maxsize=1 << 16)
def _bucket(campaign_id: str, customer_id: str) -> int:
    """Cached: `assign` asks twice per candidate (its plan, then its decision)."""
    return draw(f"variant:{campaign_id}:", customer_id)


def bounds(variants: Sequence[Variant]) -> tuple[int, ...]:
    """Each variant's first bucket past its range: cumulative `weight * 10000`, the last 10000."""
    edges, total = [], Decimal(0)
    for variant in variants:
        total += Decimal(repr(variant.weight)) * BUCKETS
        edges.append(int(total))
    if edges:
        edges[-1] = BUCKETS  # weights sum to 1 (validated), so this only absorbs rounding
    return tuple(edges)


class VariantBook:
    """Every campaign's variants with their bucket edges, and the campaign as each variant sees it.

    Built once per rules version; `assign` costs one cached hash and a short scan.
    """

    def __init__(self, campaigns: Sequence[Campaign]) -> None:
        self._arms = {
            c.campaign_id: (tuple(c.variants), bounds(c.variants)) for c in campaigns if c.variants
        }
        self._views: dict[tuple[str, str], Campaign] = {}
        self.campaigns = frozenset(self._arms)  # those with variants: `assign` is None for others

    def assign(self, campaign_id: str, customer_id: str) -> Variant | None:
        """The customer's variant of this campaign, or None when it has none."""
        arms = self._arms.get(campaign_id)
        if arms is None:
            return None
        variants, edges = arms
        return variants[bisect.bisect_right(edges, _bucket(campaign_id, customer_id))]

    def view(self, campaign: Campaign, variant: Variant | None) -> Campaign:
        """The campaign with the variant's `offer_code` and `channels` in place of its own."""
        if variant is None or (variant.offer_code is None and variant.channels is None):
            return campaign
        key = (campaign.campaign_id, variant.id)
        view = self._views.get(key)
        if view is None:
            update: dict[str, Any] = {}
            if variant.offer_code is not None:
                update["offer_code"] = variant.offer_code
            if variant.channels is not None:
                update["channels"] = variant.channels
            view = self._views[key] = campaign.model_copy(update=update)
        return view
