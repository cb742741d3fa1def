#!/usr/bin/env bash
# Installs what the integration tests need on a fresh Debian machine. Safe to run again:
# it does nothing when everything is already there.
#
# - moto_server: the S3-compatible server the R2 tests start on 127.0.0.1. 5.2.5 or later,
#   because earlier releases answer CompleteMultipartUpload with a root element that S3
#   clients cannot read.
# - chromium: the report test opens the HTML report headless and takes a screenshot.
# - postgresql: the store tests run `initdb` and `pg_ctl` from it in a temporary directory
#   (Debian puts them in /usr/lib/postgresql/<version>/bin, off PATH).
set -euo pipefail

if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
fi
echo "postgresql: $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1)"

if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq chromium
fi
echo "chromium: $(command -v chromium)"

moto='moto[server]>=5.2.5'

moto_ok() {
    command -v moto_server >/dev/null 2>&1 && python3 - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(tuple(int(p) for p in version("moto").split(".")[:3]) < (5, 2, 5))
PY
}

if moto_ok; then
    echo "moto_server: $(command -v moto_server)"
    exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq python3-pip
fi
# Debian's own Python refuses system-wide installs unless told otherwise (PEP 668).
python3 -m pip install --quiet "$moto" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "$moto"
if command -v pyenv >/dev/null 2>&1; then
    pyenv rehash
fi
moto_ok
echo "moto_server: $(command -v moto_server)"
