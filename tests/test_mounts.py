"""mount(2) and umount2(2) against the host kernel: fixtures/mountcalls.c natively as root
of a mount namespace of its own (`unshare -rm`: the host's mounts are never touched) and
in the sandbox, whose root mounts in the sandbox's own table (syscalls/mount.py); and a
loop device with mkfs.ext4 and a mount of it, and device nodes made by mknod, run only in
the sandbox (natively they would need the host's devices and its root) and checked against
what Linux gives."""
import shutil

import pytest

import harness
from harness import PLATFORMS

VARIANTS = ("glibc-static", "musl-static")


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_mount_calls(platform, variant, host_tmp_path_cleanup):
    prog = harness.build("mountcalls", variant)
    tmp = host_tmp_path_cleanup("mountcalls")
    native = harness.run_native(shutil.which("unshare"), ["-rm", str(prog), tmp], timeout=60)
    assert native.status == 0 and b"m unmounted: -1 ENOENT\n" in native.stdout, native.stderr_text()
    sandbox = harness.run_sandbox(platform, prog, [tmp], timeout=120)
    harness.compare(native, sandbox, label=f"mountcalls ({variant})")


# What Linux prints for it (checked by hand on a host with loop devices): mkfs writes the
# image through /dev/loop0, the mount shows what mkfs made, the tree outlives umount and a
# detach, and `mount -o loop` finds a free device by itself.
LOOP_SCRIPT = r"""
cd /tmp
dd if=/dev/zero of=img bs=1M count=16 2>/dev/null
/sbin/losetup /dev/loop0 img; echo "losetup: $?"
/sbin/losetup -l -n -O NAME,BACK-FILE /dev/loop0
/sbin/mkfs.ext4 -q /dev/loop0; echo "mkfs: $?"
mkdir mnt
mount /dev/loop0 mnt; echo "mount: $?"
ls -a mnt | tr '\n' ' '; echo
stat -f -c 'type=%T' mnt
echo data > mnt/f
umount mnt; echo "umount: $?"
mount -t ext2 /dev/loop0 mnt; echo "mount as ext2: $?"
mount -t tmpfs -o ro,size=1m none mnt; echo "tmpfs ro: $?"
grep ' /tmp/mnt ' /proc/mounts
umount mnt
/sbin/losetup -d /dev/loop0; echo "detach: $?"
mount -o loop img mnt; echo "mount -o loop: $?"
cat mnt/f
umount mnt
mount -t ext4 /dev/zero mnt; echo "char device: $?"
mount -t xfs img mnt; echo "unknown type: $?"
"""
LOOP_EXPECT = b"""losetup: 0
/dev/loop0 /tmp/img
mkfs: 0
mount: 0
. .. lost+found 
type=ext2/ext3
umount: 0
mount as ext2: 32
tmpfs ro: 0
none /tmp/mnt tmpfs ro,relatime,size=1024k 0 0
detach: 0
mount -o loop: 0
data
char device: 32
unknown type: 32
"""


@pytest.mark.parametrize("platform", PLATFORMS)
def test_loop_device_ext4(platform):
    for tool in ("/sbin/losetup", "/sbin/mkfs.ext4", "/bin/mount"):
        harness.require_program(tool)
    run = harness.run_sandbox(platform, "/bin/sh", ["-c", LOOP_SCRIPT], timeout=240, options=["--no-cwd"])
    assert run.stdout == LOOP_EXPECT, harness.bytes_diff(LOOP_EXPECT, run.stdout, "expected")


# Device nodes made by the sandbox's root open the sandbox's own devices (as Linux's root
# would get the kernel's): 1:3 is a null device, 7:0 the first loop device, 99:99 nothing.
MKNOD_SCRIPT = r"""
cd /tmp
mknod n c 1 3; echo "mknod c 1 3: $?"
echo hello > n; echo "write: $?"; echo "read: $(wc -c < n)"
mknod b b 7 0; echo "mknod b 7 0: $?"
stat -c '%F %t:%T' b
mknod u c 99 99; echo "mknod c 99 99: $?"
cat u 2>&1 | sed 's/^.*: //'
mkdir nd; mount -t tmpfs -o nodev none nd; mknod nd/n c 1 3
cat nd/n 2>&1 | sed 's/^.*: //'
"""
MKNOD_EXPECT = b"""mknod c 1 3: 0
write: 0
read: 0
mknod b 7 0: 0
block special file 7:0
mknod c 99 99: 0
No such device or address
Permission denied
"""


@pytest.mark.parametrize("platform", PLATFORMS)
def test_mknod_devices(platform):
    run = harness.run_sandbox(platform, "/bin/sh", ["-c", MKNOD_SCRIPT], timeout=120, options=["--no-cwd"])
    assert run.stdout == MKNOD_EXPECT, harness.bytes_diff(MKNOD_EXPECT, run.stdout, "expected")
