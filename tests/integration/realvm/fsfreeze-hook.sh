#!/bin/sh
# qemu-ga's fsfreeze hook in the real-VM test guest: the "application" quiesces on freeze.
# The sequence writer finishes its record and pauses (it writes the next number it will
# write to /tmp/quiesced) until thaw; /www/freezes logs "freeze N" and "thaw" for the tests.
# A writer that does not pause within 1 s fails the freeze: the point is then not app-consistent.
case "$1" in
freeze)
    rm -f /tmp/quiesced
    : > /tmp/quiesce
    i=0
    while [ ! -e /tmp/quiesced ] && [ $i -lt 50 ]; do usleep 20000; i=$((i + 1)); done
    if [ ! -e /tmp/quiesced ]; then rm -f /tmp/quiesce; exit 1; fi
    echo "freeze $(cat /tmp/quiesced)" >> /www/freezes
    ;;
thaw)
    rm -f /tmp/quiesce /tmp/quiesced
    echo "thaw" >> /www/freezes
    ;;
esac
exit 0
