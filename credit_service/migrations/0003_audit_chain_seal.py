"""audit_chain_seal: the chain head gets a seal, an HMAC of the newest hash with
AUDIT_HMAC_KEY. Empty until the chain is keyed: `python -m credit_service migrate` (with the key
set) re-chains existing rows with the key and seals the head (credit_service.audit.seal_chain),
since this migration cannot hold the key."""
from peewee import CharField


def up(migrator, db):
    migrator.migrate(migrator.add_column("audit_chain_head", "seal",
                                         CharField(max_length=64, default="")))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("audit_chain_head", "seal"))
