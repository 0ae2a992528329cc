#!/usr/bin/env bash
# What the test suite needs beyond .venv, installed when missing so `make test` passes on a
# fresh machine by itself: Debian's chromium for the admin page tests (Playwright drives it;
# no browser is downloaded).
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
    echo "chromium is not installed; installing it (Debian package)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q chromium || {
        $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium
    }
fi
