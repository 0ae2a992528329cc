#!/bin/sh
# The local stack's secrets (compose.yaml), one file each in deploy/compose/secrets (git-ignored),
# made once: run again, it keeps what exists. Production keeps its secrets in its own store.
set -eu
cd "$(dirname "$0")"
mkdir -p secrets
chmod 700 secrets
umask 077

token() { python3 -c 'import secrets, sys; print(secrets.token_urlsafe(int(sys.argv[1])))' "$1"; }
keep() {  # keep NAME VALUE: write the file unless it exists
    [ -s "secrets/$1" ] || printf '%s\n' "$2" > "secrets/$1"
}

keep postgres_password "$(token 24)"
password=$(cat secrets/postgres_password)
keep credit_database_url "postgresql://carpet:${password}@postgres:5432/carpet_credit"
keep render_database_url "postgresql://carpet:${password}@postgres:5432/carpet_render"
keep admin_tokens "ops:$(token 32)"
keep render_token "$(token 32)"
keep gateway_token "$(token 32)"
keep web_token "$(token 32)"
keep service_tokens "render:$(cat secrets/render_token),admin-gateway:$(cat secrets/gateway_token),web:$(cat secrets/web_token)"
keep jwt_secret "$(token 43)"
keep audit_hmac_key "$(token 43)"
keep seed_admin_password "$(token 18)"
echo "secrets in $(pwd)/secrets; the console's first admin: admin@example.com with the password in secrets/seed_admin_password"
