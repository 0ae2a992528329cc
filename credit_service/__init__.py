"""The credit service: organisations, users, balances, holds and the audit trail."""
