#!/usr/bin/env bash
# make demo: an ordinary LUKS2 image (header inside, as `cryptsetup luksFormat disk.img` makes
# it), unlocked by luksfuse and used without root: mkfs.ext4 on the served file, fuse2fs on it,
# write, unmount, read-only remount, read back. Run as root it then also shows the detached
# header and the loop-device path. Everything is cleaned up.
# Usage: contrib/demo.sh path/to/luksfuse
set -euo pipefail
LUKSFUSE=$(realpath "${1:-target/release/luksfuse}")
work=$(mktemp -d /tmp/luksfuse-demo.XXXXXX)
loopdev=""
cleanup() {
  mountpoint -q "$work/fs" 2>/dev/null && { fusermount3 -uz "$work/fs" 2>/dev/null || umount "$work/fs"; }
  [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
  mountpoint -q "$work/mnt" 2>/dev/null && fusermount3 -uz "$work/mnt"
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
# fusermount3 -u (of fuse2fs), retried briefly: FUSE releases a just-closed file
# asynchronously. `luksfuse umount` needs no such loop: it returns once its daemon has synced,
# released the payload's locks and exited (and waits a moment for a stacked fuse2fs to exit).
fuse_unmount() { for _ in $(seq 50); do fusermount3 -u "$1" 2>/dev/null && return 0; sleep 0.1; done; fusermount3 -u "$1"; }
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# test_keys HEADER: the right key opens a keyslot (exit 0), a wrong one does not (exit 2).
test_keys() {
  say luksfuse test-key -d demo.key "$1"
  "$LUKSFUSE" test-key -d demo.key "$1" && echo "keyslot opens (exit 0)"
  say "echo wrong | luksfuse test-key $1"
  set +e
  echo wrong | "$LUKSFUSE" test-key "$1"
  echo "exit code $? (2 = no key available with this passphrase)"
  set -e
}
printf 'demo passphrase' > demo.key
mkdir mnt fs
truncate -s 64M disk.img
say cryptsetup luksFormat --type luks2 --key-file demo.key disk.img
cryptsetup luksFormat -q --type luks2 --key-file demo.key \
  --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 65536 disk.img
test_keys disk.img
say luksfuse mount -d demo.key disk.img mnt
"$LUKSFUSE" mount -d demo.key disk.img mnt
ls -l mnt; grep " $work/mnt " /proc/mounts
say mkfs.ext4 -q -E root_owner mnt/disk '&&' fuse2fs mnt/disk fs
mkfs.ext4 -q -F -E root_owner mnt/disk && fuse2fs mnt/disk fs
say "echo 'hello from an encrypted disk' > fs/hello.txt; cp /etc/services fs/"
echo 'hello from an encrypted disk' > fs/hello.txt; cp /etc/services fs/
say fusermount3 -u fs '&&' luksfuse umount mnt
fuse_unmount fs && "$LUKSFUSE" umount mnt
say "grep -c 'hello from an encrypted disk' disk.img   # the image holds only ciphertext"
grep -c 'hello from an encrypted disk' disk.img || true
say luksfuse mount --readonly -d demo.key disk.img mnt '&&' fuse2fs -o ro mnt/disk fs
"$LUKSFUSE" mount --readonly -d demo.key disk.img mnt && fuse2fs -o ro mnt/disk fs
cat fs/hello.txt
cmp fs/services /etc/services && echo "fs/services is identical to /etc/services"
fuse_unmount fs && "$LUKSFUSE" umount mnt
echo
echo "demo: an ordinary LUKS2 image opened, formatted, written and read back through FUSE alone."
if [ "$(id -u)" != 0 ]; then
  echo "      (run as root to see the detached header and loop-device path too)"
  exit 0
fi

echo
echo "== as root: a detached header, and the served file as a loop device"
truncate -s 64M payload.raw
say cryptsetup luksFormat --type luks2 --header header.img --key-file demo.key payload.raw
cryptsetup luksFormat -q --type luks2 --header header.img --key-file demo.key \
  --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 65536 payload.raw
say luksfuse dump header.img
"$LUKSFUSE" dump header.img
test_keys header.img
say luksfuse dump --dump-volume-key -q -d demo.key header.img
"$LUKSFUSE" dump --dump-volume-key -q -d demo.key header.img 2>/dev/null | grep -A4 'MK dump'
say cryptsetup luksDump --dump-volume-key -q --key-file demo.key header.img
cryptsetup luksDump --dump-volume-key -q --key-file demo.key header.img | grep -A4 'MK dump'

say luksfuse mount -d demo.key header.img payload.raw mnt
"$LUKSFUSE" mount -d demo.key header.img payload.raw mnt
ls -l mnt; grep " $work/mnt " /proc/mounts
say losetup -f --show mnt/payload
loopdev=$(losetup -f --show mnt/payload); echo "$loopdev"
say mkfs.ext4 -q "$loopdev" '&&' mount "$loopdev" fs
mkfs.ext4 -q "$loopdev" && mount "$loopdev" fs
say "echo 'hello from an encrypted disk' > fs/hello.txt; cp /etc/services fs/"
echo 'hello from an encrypted disk' > fs/hello.txt; cp /etc/services fs/
say umount fs '&&' losetup -d "$loopdev" '&&' luksfuse umount mnt
umount fs && losetup -d "$loopdev" && loopdev="" && "$LUKSFUSE" umount mnt
say "grep -c 'hello from an encrypted disk' payload.raw   # the payload holds only ciphertext"
grep -c 'hello from an encrypted disk' payload.raw || true
say luksfuse mount --readonly -d demo.key header.img payload.raw mnt "&& mount -o ro ..."
"$LUKSFUSE" mount --readonly -d demo.key header.img payload.raw mnt
loopdev=$(losetup -f --show -r mnt/payload)
mount -o ro "$loopdev" fs
cat fs/hello.txt
cmp fs/services /etc/services && echo "fs/services is identical to /etc/services"
umount fs && losetup -d "$loopdev" && loopdev="" && "$LUKSFUSE" umount mnt
echo
echo "demo: luksfuse derived cryptsetup's volume key, served the plaintext disk over FUSE,"
echo "      and the ext4 file system written through it read back intact."
