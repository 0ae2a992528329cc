"""The deterministic simulation of the money and the jobs (docs/reliability.md): the real
credit and render domain code on a real database, driven step by step by a seeded scheduler,
with faults injected and invariants checked after every step."""
