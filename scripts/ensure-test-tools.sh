#!/usr/bin/env bash
# What the test suite needs beyond .venv, installed when missing so `make test` passes on a
# fresh machine by itself: Debian's chromium for the admin page tests (Playwright drives it;
# no browser is downloaded), and Node with the Node client package's dependencies.
set -euo pipefail

apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q "$@" || { $sudo apt-get update -q && $sudo apt-get install -y -q "$@"; }
}

if ! command -v chromium >/dev/null 2>&1; then
    echo "chromium is not installed; installing it (Debian package)"
    apt_install chromium
fi

# The Node client package's tests (tests/clients): node and npm, and the package's own
# dependencies from its lockfile.
if ! command -v npm >/dev/null 2>&1; then
    echo "npm is not installed; installing nodejs and npm (Debian packages)"
    apt_install nodejs npm
fi
if [ ! -d clients/node/node_modules ]; then
    (cd clients/node && npm ci --no-audit --no-fund --loglevel=error)
fi
