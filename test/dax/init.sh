#!/bin/busybox sh
# /init of the DAX guest (see test/dax/run). The kernel command line says
# what to do:
#   pmwal.setup=1     turn the label-less NVDIMM into an fsdax namespace and
#                     make an ext4 filesystem on it (first boot of an image)
#   pmwal.job=suite   run the library's test binary on the DAX mount
#   pmwal.job=cut     check the power-cut log, then append until killed
#   pmwal.job=check   check the power-cut log and the filesystem, power off
#   pmwal.inc=N       the boot number of a power-cut boot
#   pmwal.seed=S      the power-cut workload's seed
# Every line meant for the host starts with "PMWAL "; the host reads the
# serial console. The guest powers itself off when its job ends (a cut boot
# never ends by itself: the host kills QEMU).

/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

say() { echo "PMWAL $*"; }
die() {
	say "FATAL $*"
	dmesg | tail -n 40
	poweroff -f
	sleep 10
}

setup=0 job=none inc=0 seed=0
for a in $(cat /proc/cmdline); do
	case "$a" in
	pmwal.setup=*) setup=${a#*=} ;;
	pmwal.job=*) job=${a#*=} ;;
	pmwal.inc=*) inc=${a#*=} ;;
	pmwal.seed=*) seed=${a#*=} ;;
	esac
done

say "BOOTED job=$job setup=$setup inc=$inc uptime=$(cut -d' ' -f1 /proc/uptime)"

# Dependency order: libnvdimm before nd_btt, nd_pmem and nfit; jbd2,
# mbcache and crc16 before ext4.
for m in crc32c_generic crc16 mbcache jbd2 ext4 libnvdimm nd_btt nd_pmem nfit; do
	insmod /lib/modules/$m.ko || die "insmod $m failed"
done

# nfit finds the NVDIMM through ACPI; wait for its namespace.
i=0
while [ ! -e /sys/bus/nd/devices/namespace0.0 ]; do
	i=$((i + 1))
	[ $i -gt 100 ] && die "no NVDIMM namespace appeared (is the nvdimm device on the QEMU command line?)"
	sleep 0.1
done

if [ "$setup" = 1 ]; then
	# A label-less NVDIMM comes up as a raw namespace, which has no DAX.
	/opt/ndctl create-namespace -f -e namespace0.0 -m fsdax -M mem >/tmp/ns.json 2>&1 ||
		{ cat /tmp/ns.json; die "ndctl create-namespace failed"; }
	say "NAMESPACE $(tr -d ' \n' </tmp/ns.json)"
fi

i=0
while [ ! -b /dev/pmem0 ]; do
	i=$((i + 1))
	[ $i -gt 100 ] && die "no /dev/pmem0"
	sleep 0.1
done
mode=$(/opt/ndctl list -n namespace0.0 2>/dev/null | tr -d ' \n')
case "$mode" in
*'"mode":"fsdax"'*) ;;
*) die "namespace0.0 is not fsdax: $mode" ;;
esac

if [ "$setup" = 1 ]; then
	/opt/mke2fs -q -F -t ext4 -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 /dev/pmem0 || die "mke2fs failed"
fi

# ext4 replays its journal here after a power cut.
mount -t ext4 -o dax /dev/pmem0 /mnt || die "mount -o dax /dev/pmem0 failed"
grep -q ' /mnt ext4 .*dax' /proc/mounts || die "/mnt is not mounted with dax: $(grep /mnt /proc/mounts)"
say "MOUNTED $(grep ' /mnt ' /proc/mounts) uptime=$(cut -d' ' -f1 /proc/uptime)"

case "$job" in
suite)
	# Every test's files go to the DAX mount: t.TempDir through TMPDIR, and
	# the tests that want tmpfs through /dev/shm, which here is a directory
	# on the same DAX filesystem.
	mkdir -p /mnt/tmp /mnt/shm /dev/shm
	mount --bind /mnt/shm /dev/shm || die "bind /dev/shm failed"
	/bin/pmwal-dax-guest probe /mnt/tmp || die "probe failed"
	cd /mnt/tmp
	export TMPDIR=/mnt/tmp PMWAL_DAX_GUEST=1 WAL_PERSIST=auto HOME=/mnt/tmp
	# One invocation of the test binary per line of /etc/pmwal-test-args.
	set -f
	while read -r args; do
		[ -n "$args" ] || continue
		say "SUITE-START args=$args"
		/bin/wal.test -test.count=1 -test.v $args 2>&1
		say "SUITE-EXIT $?"
	done </etc/pmwal-test-args
	set +f
	cd /
	;;
cut)
	mkdir -p /mnt/cut
	# Every other boot appends with stores and CLWB instead of non-temporal
	# stores, so that both ways of writing a record meet the power cuts.
	[ $((inc % 2)) = 1 ] && export WAL_NT_THRESHOLD=off
	/bin/pmwal-dax-guest check -dir /mnt/cut/log -seed "$seed" -inc "$inc" || die "check failed to run"
	/bin/pmwal-dax-guest append -dir /mnt/cut/log -seed "$seed" -inc "$inc"
	die "the appender exited (status $?) instead of running until the power cut"
	;;
check)
	/bin/pmwal-dax-guest check -dir /mnt/cut/log -seed "$seed" -inc "$inc" || die "check failed to run"
	# What the operator's command says about a log on DAX.
	for c in info verify; do
		/bin/pmwal $c /mnt/cut/log >/tmp/pmwal.out 2>&1 || { sed 's/^/PMWAL INFO /' /tmp/pmwal.out; die "pmwal $c failed"; }
		echo "\$ pmwal $c /mnt/cut/log" | cat - /tmp/pmwal.out | sed 's/^/PMWAL INFO /'
	done
	;;
none) ;;
*) die "unknown job $job" ;;
esac

umount /mnt || die "umount failed"
if [ "$job" = check ]; then
	# After all the power cuts, the filesystem itself must be clean.
	if /opt/e2fsck -f -n /dev/pmem0 >/tmp/fsck.out 2>&1; then
		say "FSCK clean: $(tail -n 1 /tmp/fsck.out)"
	else
		cat /tmp/fsck.out
		die "e2fsck -f -n /dev/pmem0 found problems after the power cuts"
	fi
fi
say "DONE"
poweroff -f
sleep 10
