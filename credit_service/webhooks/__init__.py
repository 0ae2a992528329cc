"""Webhooks (`docs/webhooks.md`): endpoints, the event outbox, signing and delivery.

- `signing`: each endpoint's secret (derived, never stored) and the Standard Webhooks signature;
- `targets`: the SSRF guard and the HTTP POST to a resolved, checked address;
- `outbox`: endpoints, events written in the caller's transaction, deliveries, retries;
- `dispatcher`: the delivery worker (leases, backoff, bounded concurrency).
"""
