#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what the tests need (BIND 9's
# named, nsupdate and dig, for the DNS tests; QEMU, libvirt and a guest kernel for the
# real-VM tests, through scripts/install-realvm.sh), then runs cargo test. Extra
# arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if ! { have named && have nsupdate && have dig; }; then
    if [ "$(id -u)" -eq 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq bind9 bind9-dnsutils >/dev/null
    else
        echo "scripts/test.sh: the DNS tests need BIND 9: sudo apt-get install bind9 bind9-dnsutils" >&2
    fi
fi

if [ "$(id -u)" -eq 0 ]; then
    scripts/install-realvm.sh
elif ! scripts/install-realvm.sh 2>/dev/null; then
    echo "scripts/test.sh: the real-VM tests need QEMU, libvirt and a guest kernel: sudo scripts/install-realvm.sh" >&2
fi

cargo test "$@"
