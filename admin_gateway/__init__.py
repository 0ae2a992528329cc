"""The admin gateway: one authenticated, audited surface over the credit and render services."""
