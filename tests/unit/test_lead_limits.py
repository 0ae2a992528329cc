"""The spam limits on quote requests (`docs/shares-and-leads.md`): 5 an hour per visitor address
and source, 300 a day per source (a key, or a shop's share pages), whoever sends them."""
import pytest

from carpet_common.errors import ResourceExhausted
from render_service.sales_servicer import LeadLimits


def test_a_source_takes_300_requests_a_day_from_any_number_of_visitors():
    limits = LeadLimits("memory://")
    for n in range(300):
        limits.check("key:1", f"198.51.{n // 200}.{n % 200}")
    with pytest.raises(ResourceExhausted):
        limits.check("key:1", "203.0.113.99")  # a visitor never seen: the key's day is used up
    limits.check("key:2", "203.0.113.99")  # another shop's key has its own


def test_a_visitor_sends_five_an_hour_to_each_source():
    limits = LeadLimits("memory://")
    for _ in range(5):
        limits.check("share-org:7", "203.0.113.5")
    with pytest.raises(ResourceExhausted):
        limits.check("share-org:7", "203.0.113.5")
    limits.check("share-org:7", "203.0.113.6")
    limits.check("key:3", "203.0.113.5")
