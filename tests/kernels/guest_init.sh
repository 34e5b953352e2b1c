#!/bin/sh
# /init of the matrix's initramfs. The guest's root is the host's / shared
# read-only over 9p, with a tmpfs overlay on top: the guest may write anywhere,
# and everything it writes is gone at power-off. It runs the job script named by
# `matrix_job=` on the kernel command line, then powers off.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in $(cat /lib/mods/order); do
    insmod "/lib/mods/$module" || echo "MATRIX: insmod $module failed"
done
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower; then
    echo "MATRIX: 9p mount failed"; poweroff -f
fi
mount -t tmpfs rw /rw
mkdir -p /rw/upper /rw/work
if ! mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /mnt/root; then
    echo "MATRIX: overlay mount failed"; poweroff -f
fi
R=/mnt/root
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs shm $R/dev/shm
mount -t tmpfs run $R/run
# /tmp stays the host's, through the overlay (writes land in RAM): the checkout
# under test, and the job script, may live there (CI clones into a temp folder).
JOB=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^matrix_job=//p')
echo "MATRIX-BEGIN"
# switch_root, not chroot: the job's `nsenter --mount` must find this root as
# its namespace's root. Power-off then uses the host's static busybox.
exec switch_root /mnt/root /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    /bin/sh -c "/bin/sh $JOB; echo \"MATRIX-END rc=\$?\"; /bin/busybox poweroff -f"
