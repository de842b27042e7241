use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::*;

/// Real /proc/self/mounts of a container host, plus lines for the cases below.
const MOUNTS: &str = "\
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12334432k,nr_inodes=3083608,mode=755 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24683656k 0 0
devpts /dev/pts devpts rw,relatime,mode=600,ptmxmode=000 0 0
/dev/vda / ext4 rw,relatime,discard 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
/dev/vda /etc/hosts ext4 rw,relatime,discard 0 0
/dev/nvme0n1p2 /mnt/my\\040data xfs rw,noatime 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw,relatime 0 0
/dev/loop3 /snap/core/123 squashfs ro,nodev,relatime 0 0
nas:/export /mnt/nas nfs4 rw,relatime 0 0
//nas/share /mnt/share cifs rw,relatime 0 0
/dev/sdb1 /mnt/usb fuseblk rw,relatime 0 0
sshfs#me@host:/ /mnt/sshfs fuse.sshfs rw 0 0
/dev/mapper/vg-home /home ext4 rw 0 0
";

#[track_caller]
fn check_unescape(field: &str, expected: &[u8]) {
    assert_eq!(&*unescape(field.as_bytes()), expected, "{field:?}");
}

#[track_caller]
fn check_real(device: &str, fs_type: &str, expected: bool) {
    assert_eq!(
        is_real_filesystem(device.as_bytes(), fs_type.as_bytes()),
        expected,
        "{device} {fs_type}"
    );
}

/// Runs `fill` over `mounts` with a fake statvfs that fails for `failing`
/// and reports `(used, total)` = (1, 2) otherwise; compares the reported
/// "mount_point device fs_type" lines and the errors' Display.
#[track_caller]
fn check(mounts: &str, failing: &str, expected: &str, expected_errors: &[&str]) {
    let mut sample = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
    let mut errors = Vec::new();
    let usage = |mount_point: &Path| {
        if mount_point == Path::new(failing) {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        } else {
            Ok((1, 2))
        }
    };
    fill(
        mounts.as_bytes(),
        &PathBuf::from("/proc/self/mounts"),
        usage,
        &mut sample,
        &mut errors,
    );
    let got: Vec<String> = sample
        .filesystems
        .iter()
        .map(|fs| {
            assert_eq!((fs.used_bytes, fs.total_bytes), (1, 2));
            format!("{} {} {}", fs.mount_point, fs.device, fs.fs_type)
        })
        .collect();
    assert_eq!(got.join("\n"), expected.trim());
    let got_errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(got_errors, expected_errors);
}

#[test]
fn unescapes_octal() {
    check_unescape("/mnt/plain", b"/mnt/plain");
    check_unescape("/mnt/my\\040data", b"/mnt/my data");
    check_unescape("/mnt/a\\011b\\012c", b"/mnt/a\tb\nc");
    check_unescape("/mnt/back\\134slash", b"/mnt/back\\slash");
    check_unescape("/mnt/\\303\\251", "/mnt/é".as_bytes());
    // Not an escape: kept as is.
    check_unescape("/mnt/x\\9yz", b"/mnt/x\\9yz");
    check_unescape("/mnt/x\\04", b"/mnt/x\\04");
    check_unescape("/mnt/x\\", b"/mnt/x\\");
    check_unescape("/mnt/x\\777", b"/mnt/x\\777");
}

#[test]
fn real_filesystem_filter() {
    check_real("/dev/sda1", "ext4", true);
    check_real("/dev/mapper/vg-root", "xfs", true);
    check_real("/dev/nvme0n1p1", "vfat", true);
    check_real("/dev/sdb1", "fuseblk", true);
    check_real("/dev/md0", "btrfs", true);
    check_real("tmpfs", "tmpfs", false);
    check_real("proc", "proc", false);
    check_real("overlay", "overlay", false);
    check_real("/dev/loop0", "squashfs", false);
    check_real("/dev/sr0", "iso9660", false);
    check_real("//nas/share", "cifs", false);
    check_real("nas:/export", "nfs4", false);
    check_real("/dev/fuse", "fuse.sshfs", false);
    check_real("rpool/ROOT/ubuntu", "zfs", false);
    check_real("none", "tmpfs", false);
}

#[test]
fn real_filesystems_deduped_by_device() {
    check(
        MOUNTS,
        "",
        "
/ /dev/vda ext4
/mnt/my data /dev/nvme0n1p2 xfs
/mnt/usb /dev/sdb1 fuseblk
/home /dev/mapper/vg-home ext4",
        &[],
    );
}

#[test]
fn statvfs_failure_is_an_error_for_that_mount_only() {
    check(
        MOUNTS,
        "/mnt/my data",
        "
/ /dev/vda ext4
/mnt/usb /dev/sdb1 fuseblk
/home /dev/mapper/vg-home ext4",
        &["failed to stat filesystem mounted at /mnt/my data"],
    );
}

#[test]
fn short_line_is_a_parse_error() {
    check(
        "/dev/sda1 /\n/dev/sdb1 /data ext4 rw 0 0\n",
        "",
        "/data /dev/sdb1 ext4",
        &["failed to parse /proc/self/mounts: short mount line \"/dev/sda1 /\""],
    );
}

#[test]
fn non_utf8_mount_point_is_still_reported() {
    let mut mounts = b"/dev/sda1 /mnt/".to_vec();
    mounts.push(0xff);
    mounts.extend_from_slice(b" ext4 rw 0 0\n");
    let parsed: Vec<_> = parse_mounts(&mounts)
        .collect::<Result<_, _>>()
        .expect("parses");
    assert_eq!(&*parsed[0].mount_point, b"/mnt/\xff");

    let mut sample = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
    let mut errors = Vec::new();
    fill(
        &mounts,
        Path::new("mounts"),
        |_: &Path| Ok((0, 0)),
        &mut sample,
        &mut errors,
    );
    assert!(errors.is_empty());
    assert_eq!(sample.filesystems[0].mount_point, "/mnt/\u{fffd}");
}
