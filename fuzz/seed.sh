#!/usr/bin/env bash
# Seeds the fuzz corpora with small LUKS headers made by cryptsetup and qcow2 images made by
# qemu-img/qemu-io, so that the fuzzers start from what the real tools write.
#
#   fuzz/seed.sh [CORPUS_DIR]      (default: the corpus/ directory next to this script)
#
# Writes CORPUS_DIR/<target>/seed-* for the targets luks1_header, luks2_header, unlock and
# qcow2_open; files the fuzzers added are left alone. Re-running replaces the seeds with new
# ones (cryptsetup's salts and keys are random). Every header is formatted with the passphrase
# "fuzz", the one the unlock target tries, and minimal forced KDF costs.
#
# Sizes: the LUKS targets are run with -max_len=327680 (320 KiB), the qcow2 target with
# -max_len=65536 (64 KiB); the seeds fit. LUKS2 headers use a 16 KiB or 32 KiB metadata area
# and a keyslots area of 128..256 KiB. A LUKS1 header file always holds all 8 keyslot areas
# (0.5..2 MiB); it is cut to 256 KiB, which keeps the areas of its active keyslots (0 and 1)
# and so stays a header luksfuse accepts.
set -euo pipefail

export PATH="$PATH:/sbin:/usr/sbin"
for cmd in cryptsetup qemu-img qemu-io; do
    command -v "$cmd" >/dev/null || { echo "seed.sh: $cmd is missing (make deps)" >&2; exit 1; }
done

here=$(cd "$(dirname "$0")" && pwd)
corpus=${1:-$here/corpus}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$corpus"/{luks1_header,luks2_header,unlock,qcow2_open}
printf fuzz >"$work/key"
printf fuzz2 >"$work/key2"
truncate -s 16M "$work/payload"

pbkdf2=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
argon2=(--pbkdf-force-iterations 4 --pbkdf-memory 32 --pbkdf-parallel 1)

# format NAME TYPE ARGS...: luksFormat a detached header $work/NAME with passphrase "fuzz".
format() {
    local name=$1 type=$2
    shift 2
    cryptsetup luksFormat -q --type "$type" --header "$work/$name" --key-file "$work/key" \
        "$@" "$work/payload" | { grep -v 'keyslots area .* is very small' || true; }
}
# add_key NAME ARGS...: a second passphrase "fuzz2" in the next free keyslot.
add_key() {
    local name=$1
    shift
    cryptsetup luksAddKey -q "$work/$name" --key-file "$work/key" "$work/key2" "$@"
}
# put NAME TARGET...: copy the header or image NAME into the corpora of TARGETs.
put() {
    local name=$1
    shift
    for t in "$@"; do cp "$work/$name" "$corpus/$t/seed-$name"; done
}

# ---- LUKS1 ----
format luks1-xts512-sha512 luks1 --key-size 512 --hash sha512 --pbkdf-force-iterations 1000
format luks1-xts256-sha256 luks1 --key-size 256 --hash sha256 --pbkdf-force-iterations 1000
format luks1-cbc128-ripemd160-2keys luks1 --cipher aes-cbc-essiv:sha256 --key-size 128 \
    --hash ripemd160 --pbkdf-force-iterations 1000
add_key luks1-cbc128-ripemd160-2keys --pbkdf-force-iterations 1000
for h in luks1-xts512-sha512 luks1-xts256-sha256 luks1-cbc128-ripemd160-2keys; do
    truncate -s 256K "$work/$h"
    put "$h" luks1_header unlock
done

# ---- LUKS2 ----
small=(--luks2-metadata-size 16k --luks2-keyslots-size 128k)
format luks2-pbkdf2-xts256 luks2 --key-size 256 "${pbkdf2[@]}" "${small[@]}"
format luks2-argon2id-xts256-label luks2 --key-size 256 --pbkdf argon2id "${argon2[@]}" \
    "${small[@]}" --label fuzz-label --subsystem fuzz-subsystem --sector-size 4096
format luks2-argon2i-xts512 luks2 --key-size 512 --pbkdf argon2i "${argon2[@]}" \
    --luks2-metadata-size 32k --luks2-keyslots-size 256k
# Three keyslots (pbkdf2, unbound, argon2i with priority "ignore"), a token, a preferred slot.
format luks2-cbc128-3slots luks2 --cipher aes-cbc-essiv:sha256 --key-size 128 --hash sha1 \
    "${pbkdf2[@]}" --luks2-metadata-size 16k --luks2-keyslots-size 192k
cryptsetup luksAddKey -q --unbound --key-size 128 "${pbkdf2[@]}" "$work/luks2-cbc128-3slots" \
    "$work/key2"
add_key luks2-cbc128-3slots --pbkdf argon2i "${argon2[@]}"
cryptsetup config "$work/luks2-cbc128-3slots" --key-slot 2 --priority ignore
cryptsetup config "$work/luks2-cbc128-3slots" --key-slot 0 --priority prefer
echo '{"type":"fuzz-token","keyslots":["0"],"note":"seed"}' |
    cryptsetup token import "$work/luks2-cbc128-3slots"
for h in luks2-pbkdf2-xts256 luks2-argon2id-xts256-label luks2-argon2i-xts512 \
    luks2-cbc128-3slots; do
    put "$h" luks2_header unlock
done

# ---- qcow2 ----
# qcow2 NAME SIZE OPTIONS [QEMU-IO COMMAND...]: a qcow2 image, then qemu-io writes into it.
qcow2() {
    local name=$1 size=$2 opts=$3
    shift 3
    qemu-img create -q -f qcow2 -o "$opts" "$work/$name" "$size"
    local args=()
    for c in "$@"; do args+=(-c "$c"); done
    if [ ${#args[@]} -gt 0 ]; then qemu-io -f qcow2 "${args[@]}" "$work/$name" >/dev/null; fi
}
qcow2 qcow2-v2-c512 1M compat=0.10,cluster_size=512 \
    "write -P 0xaa 0 4k" "write -P 0x55 300k 1k"
qcow2 qcow2-v3-c4k 2M compat=1.1,cluster_size=4096 \
    "write -P 0xaa 0 8k" "write -z 64k 8k" "write -c -P 0x11 128k 4k" "write -P 0x22 2044k 4k"
qcow2 qcow2-v3-c512-refcount1-lazy 256k \
    compat=1.1,cluster_size=512,refcount_bits=1,lazy_refcounts=on "write -P 0x33 1k 3k"
qcow2 qcow2-v3-c1k-refcount64 1M compat=1.1,cluster_size=1024,refcount_bits=64 \
    "write -P 0x44 0 2k"
qcow2 qcow2-v3-c4k-snapshot 1M cluster_size=4096 "write -P 0x66 0 4k"
qemu-img snapshot -c s1 "$work/qcow2-v3-c4k-snapshot"
qemu-io -f qcow2 -c "write -P 0x67 0 4k" "$work/qcow2-v3-c4k-snapshot" >/dev/null
qcow2 qcow2-v3-c512-backing 1M cluster_size=512,backing_file=qcow2-v2-c512,backing_fmt=qcow2
qcow2 qcow2-v3-c512-empty 64M cluster_size=512
for i in qcow2-v2-c512 qcow2-v3-c4k qcow2-v3-c512-refcount1-lazy qcow2-v3-c1k-refcount64 \
    qcow2-v3-c4k-snapshot qcow2-v3-c512-backing qcow2-v3-c512-empty; do
    put "$i" qcow2_open
done

for t in luks1_header luks2_header unlock qcow2_open; do
    echo "seed.sh: $corpus/$t: $(ls "$corpus/$t" | wc -l) files"
done
