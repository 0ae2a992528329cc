-- The application role of the credit service on PostgreSQL (docs/security.md).
-- Run as the schema's owner after `python -m credit_service migrate`, which itself runs as the
-- owner (migrations and the one-time keying of the audit chain rewrite tables). The services
-- then connect as carpet_app: they may append to the audit log, never rewrite or remove it.
GRANT CONNECT ON DATABASE ":database" TO carpet_app;
GRANT USAGE ON SCHEMA public TO carpet_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO carpet_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO carpet_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM carpet_app;
