"""Whom a rate limit counts: IPv4 addresses one by one, IPv6 clients by their /64."""
from carpet_common.ratelimit import RateLimiter, client_key


def test_ipv6_clients_are_counted_by_their_64():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == \
        "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key("unix:/tmp/x") == "unix:/tmp/x"


def test_one_ipv6_subscriber_shares_one_budget():
    import pytest

    from carpet_common.errors import ResourceExhausted

    limiter = RateLimiter("2/minute", namespace="test-ipv6")
    limiter.check("2001:db8:9:9::1")
    limiter.check("2001:db8:9:9::2")
    with pytest.raises(ResourceExhausted):
        limiter.check("2001:db8:9:9::3")  # another address of the same /64
    limiter.check("2001:db8:9:a::1")  # the next /64 is another client
