#!/usr/bin/env bash
# make demo: create a demo detached header with cryptsetup, unlock it with luksfuse, show it.
# Usage: contrib/demo.sh path/to/luksfuse
set -euo pipefail
LUKSFUSE=$(realpath "${1:-target/release/luksfuse}")
work=$(mktemp -d /tmp/luksfuse-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

printf 'demo passphrase' > demo.key
truncate -s 64M payload.raw
say cryptsetup luksFormat --type luks2 --header header.img --key-file demo.key payload.raw
cryptsetup luksFormat -q --type luks2 --header header.img --key-file demo.key \
  --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 65536 payload.raw
say luksfuse dump header.img
"$LUKSFUSE" dump header.img
say luksfuse test-key -d demo.key header.img
"$LUKSFUSE" test-key -d demo.key header.img && echo "keyslot opens (exit 0)"
say "echo wrong | luksfuse test-key header.img"
set +e
echo wrong | "$LUKSFUSE" test-key header.img
echo "exit code $? (2 = no key available with this passphrase)"
set -e
say luksfuse dump --dump-volume-key -q -d demo.key header.img
"$LUKSFUSE" dump --dump-volume-key -q -d demo.key header.img 2>/dev/null | grep -A4 'MK dump'
say cryptsetup luksDump --dump-volume-key -q --key-file demo.key header.img
cryptsetup luksDump --dump-volume-key -q --key-file demo.key header.img | grep -A4 'MK dump'
echo
echo "demo: luksfuse unlocked the header and derived the same volume key as cryptsetup."
