#!/bin/busybox sh
# PID 1 of the real-VM test guest (a busybox initramfs; see tests/integration/realvm/mod.rs).
# Loads the virtio drivers, starts qemu-ga, powers off on the ACPI power button, gets eth0's
# address by DHCP, writes the sequence to the raw data disk /dev/vda and serves it over HTTP.
/bin/busybox --install -s /bin
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /www /tmp /var/run /dev/virtio-ports
say() { echo "GUEST $* uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console; }

# Order matters: each module after those it needs (no modprobe, no modules.dep here).
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk \
         failover net_failover virtio_net virtio_console evdev button; do
    insmod /mod/$m.ko || say "INSMOD FAILED $m"
done

SITE=unknown
for word in $(cat /proc/cmdline); do
    case "$word" in site=*) SITE="${word#site=}" ;; esac
done
hostname "$SITE"
echo "$SITE" > /www/site
say "BOOT site=$SITE"

# ACPI shutdown without acpid: the first event of the "Power Button" input device.
for d in /sys/class/input/input*; do
    if grep -q "Power Button" "$d/name" 2>/dev/null; then
        ev=$(ls -d "$d"/event* 2>/dev/null | head -1)
        ev=${ev##*/}
        [ -n "$ev" ] && ( dd if=/dev/input/$ev bs=24 count=1 >/dev/null 2>&1; say "POWER BUTTON"; sync; poweroff -f ) &
    fi
done

# qemu-guest-agent: devtmpfs makes /dev/vportNpM but no udev names.
for p in /sys/class/virtio-ports/vport*; do
    [ -e "$p/name" ] && ln -sf "/dev/${p##*/}" "/dev/virtio-ports/$(cat "$p/name")"
done
if [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ]; then
    /sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -d -f /var/run/qemu-ga.pid \
        --fsfreeze-hook=/etc/qemu/fsfreeze-hook \
        && say "QGA STARTED" || say "QGA FAILED"
fi

ip link set lo up
ip link set eth0 up
# DHCP (the address is the site network's reservation for this MAC); keeps renewing.
udhcpc -i eth0 -f -t 5 -T 1 -A 1 -x "hostname:$SITE" -s /etc/udhcpc/default.script >/dev/console 2>&1 &

# The sequence writer: a 512-byte record "seq=N time=T site=S" at sector N+1 of the raw disk,
# the latest also at sector 0, each synced, ~every 100 ms. Resumes after sector 0's record,
# so a replica of the disk continues the sequence. Pauses between two records while qemu-ga's
# freeze hook asks it to (/tmp/quiesce), for at most 10 s.
LAST=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -d '\0' | sed -n 's/^seq=\([0-9][0-9]*\) .*/\1/p')
if [ -n "$LAST" ]; then seq=$((LAST + 1)); else seq=0; fi
echo "$seq" > /www/resumed
say "WRITER FROM seq=$seq"
(
    while true; do
        if [ -e /tmp/quiesce ]; then
            echo "$seq" > /tmp/quiesced
            i=0
            while [ -e /tmp/quiesce ] && [ $i -lt 500 ]; do usleep 20000; i=$((i + 1)); done
        fi
        printf '%-511s\n' "seq=$seq time=$(date +%s) site=$SITE" > /tmp/rec
        if dd if=/tmp/rec of=/dev/vda bs=512 seek=$((seq + 1)) conv=notrunc,fsync 2>/dev/null \
            && dd if=/tmp/rec of=/dev/vda bs=512 seek=0 conv=notrunc,fsync 2>/dev/null; then
            echo "$seq" > /www/counter.new && mv /www/counter.new /www/counter
            seq=$((seq + 1))
        else
            say "WRITE FAILED seq=$seq"
            sleep 1
        fi
        usleep 100000
    done
) &

httpd -p 80 -h /www && say "HTTPD STARTED"
while true; do sleep 3600; done
