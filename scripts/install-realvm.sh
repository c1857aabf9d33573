#!/usr/bin/env bash
# Installs what the real-VM integration tests (tests/integration/realvm/) need on a fresh
# Debian 12 machine, as root: QEMU (TCG), libvirt, dnsmasq for the sites' DHCP, the Debian
# kernel and busybox-static the test guest boots, qemu-guest-agent for inside it, the NBD
# tools replication uses, iproute2, cpio and curl the harness calls, and ssh (client and
# server: the tests' sites on hosts of their own are reached over ssh). Quiet and
# idempotent: does nothing when everything is there.
set -euo pipefail

# The programs (and files) that prove each package is installed.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
kernel_present() { compgen -G '/boot/vmlinuz-*-amd64' >/dev/null && compgen -G '/lib/modules/*/modules.dep' >/dev/null; }
all_present() {
    have qemu-system-x86_64 && have qemu-img && have busybox && have libvirtd && have virtlogd &&
        have virsh && have dnsmasq && have qemu-ga && have nbdinfo && have ip && have cpio && have curl && have ssh && have sshd && have ssh-keygen &&
        [ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] &&
        kernel_present
}

if all_present; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/install-realvm.sh: run as root (apt-get install)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# qemu-system-x86 first: on some images it replaces a preinstalled, newer qemu-utils that
# conflicts with it; installing both in one command fails there.
apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
apt-get install -y -qq --no-install-recommends qemu-utils busybox-static linux-image-amd64 \
    libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu dnsmasq-base \
    qemu-guest-agent libnbd-bin iproute2 cpio curl openssh-client openssh-server >/dev/null

if ! all_present; then
    echo "scripts/install-realvm.sh: packages installed, but something is still missing" >&2
    exit 1
fi
