#!/usr/bin/env bash
# make bench: luksfuse against its peers, side by side in one run, as ratios.
# Usage: contrib/bench.sh path/to/luksfuse
set -euo pipefail
LUKSFUSE=$(realpath "${1:-target/release/luksfuse}")
RUNS=${RUNS:-5}
work=$(mktemp -d /tmp/luksfuse-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 'bench passphrase' > pass
truncate -s 16M payload.raw

now_ns() { date +%s%N; }
# time_runs CMD...: average wall time in ms over $RUNS runs (after one warm-up run)
time_runs() {
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
  local start end
  start=$(now_ns)
  for _ in $(seq "$RUNS"); do "$@" >/dev/null 2>&1; done
  end=$(now_ns)
  echo $(( (end - start) / RUNS / 1000000 ))
}

echo "== unlock: luksfuse test-key vs cryptsetup open --test-passphrase ($RUNS runs each) =="
printf '%-34s %10s %10s %8s\n' header "luksfuse" "cryptsetup" "ratio"
bench_unlock() { # name, luksFormat args...
  local name=$1; shift
  cryptsetup luksFormat -q --header "h-$name.img" --key-file pass "$@" payload.raw
  local ours theirs
  ours=$(time_runs "$LUKSFUSE" test-key -d pass "h-$name.img")
  theirs=$(time_runs cryptsetup open --test-passphrase --key-file pass "h-$name.img")
  printf '%-34s %8s ms %8s ms %7.2fx\n' "$name" "$ours" "$theirs" \
    "$(echo "scale=4; $ours / $theirs" | bc -l 2>/dev/null || awk "BEGIN{print $ours/$theirs}")"
}
bench_unlock "luks1 pbkdf2-sha256 (1 s)" --type luks1 --hash sha256 --iter-time 1000
bench_unlock "luks2 argon2id 4 lanes 256 MiB" --type luks2 --pbkdf argon2id \
  --pbkdf-force-iterations 4 --pbkdf-memory 262144 --pbkdf-parallel 4
echo "(ratio = luksfuse time / cryptsetup time; goal <= 1.0)"

# ---- Throughput through the mount: luksfuse vs qemu-storage-daemon's FUSE export ----
if ! "$LUKSFUSE" mount --help >/dev/null 2>&1; then exit 0; fi
command -v fio >/dev/null || { echo "fio missing: run 'make bench' (installs it)"; exit 1; }
SIZE_MB=${SIZE_MB:-1024}
shm=$(mktemp -d /dev/shm/luksfuse-bench.XXXXXX)
mnt="$work/mnt"; mkdir -p "$mnt"
qsd_pid=""
cleanup_mounts() {
  fusermount3 -u "$mnt" 2>/dev/null || true
  fusermount3 -u "$shm/export" 2>/dev/null || true
  [ -n "$qsd_pid" ] && kill "$qsd_pid" 2>/dev/null && wait "$qsd_pid" 2>/dev/null
  rm -rf "$shm"
}
trap 'cleanup_mounts; rm -rf "$work"' EXIT
truncate -s "${SIZE_MB}M" "$shm/payload.raw"
cryptsetup luksFormat -q --type luks1 --header "$shm/h1.img" --key-file pass \
  --pbkdf-force-iterations 1000 "$shm/payload.raw"

# fio_run FILE RW BS DEPTH -> prints "MB/s IOPS"
fio_run() {
  fio --name=b --filename="$1" --rw="$2" --bs="$3" --iodepth="$4" --ioengine=libaio \
      --direct=1 --size="${SIZE_MB}M" --runtime="${RUNTIME:-8}" --time_based=1 \
      --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; k="read" if j["read"]["io_bytes"] else "write"; print("%.0f %.0f" % (j[k]["bw_bytes"]/1e6, j[k]["iops"]))'
}
run_suite() { # FILE -> "seqread seqwrite randread_iops" (write first: qcow2 reads allocated data)
  local r w q
  w=$(fio_run "$1" write 1M 4 | cut -d' ' -f1)
  r=$(fio_run "$1" read 1M 4 | cut -d' ' -f1)
  q=$(fio_run "$1" randread 4k 16 | cut -d' ' -f2)
  echo "$r $w $q"
}

# compare LABEL PAYLOAD DRIVER: one fio suite through luksfuse, one through QEMU's FUSE export
compare() {
  local label=$1 payload=$2 driver=$3 name ours theirs
  name=$(basename "${payload%.*}")
  "$LUKSFUSE" mount -d pass "$shm/h1.img" "$payload" "$mnt"
  ours=$(run_suite "$mnt/$name")
  fuse_unmount "$mnt"
  touch "$shm/export"
  qemu-storage-daemon --object secret,id=s,file=pass \
    --blockdev "{\"driver\":\"luks\",\"node-name\":\"l0\",\"key-secret\":\"s\",\"file\":{\"driver\":\"$driver\",\"file\":{\"driver\":\"file\",\"filename\":\"$payload\"}},\"header\":{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"$shm/h1.img\"}}}" \
    --export type=fuse,id=e0,node-name=l0,mountpoint="$shm/export",writable=on &
  qsd_pid=$!
  for _ in $(seq 50); do grep -q " $shm/export " /proc/mounts && break; sleep 0.1; done
  theirs=$(run_suite "$shm/export")
  kill "$qsd_pid"; wait "$qsd_pid" 2>/dev/null || true; qsd_pid=""
  echo "$label $ours $theirs" >> "$work/results"
}
fuse_unmount() { for _ in $(seq 50); do fusermount3 -u "$1" 2>/dev/null && return 0; sleep 0.1; done; fusermount3 -u "$1"; }

compare raw "$shm/payload.raw" raw
qemu-img create -q -f qcow2 -o preallocation=metadata "$shm/payload.qcow2" "${SIZE_MB}M"
compare qcow2 "$shm/payload.qcow2" qcow2

echo
echo "== throughput through FUSE, LUKS1 aes-xts-plain64 512-bit, payload in tmpfs (${SIZE_MB} MiB, fio, direct I/O, ${RUNTIME:-8} s each) =="
printf '%-8s %-22s %12s %12s %8s\n' payload test luksfuse "qemu-sd" ratio
ratio() { awk "BEGIN{ if ($2 > 0) printf \"%.1fx\", $1/$2; else print \"-\" }"; }
while read -r label o_r o_w o_q t_r t_w t_q; do
  printf '%-8s %-22s %9s MB/s %7s MB/s %8s\n' "$label" "seq read 1 MiB qd4" "$o_r" "$t_r" "$(ratio "$o_r" "$t_r")"
  printf '%-8s %-22s %9s MB/s %7s MB/s %8s\n' "$label" "seq write 1 MiB qd4" "$o_w" "$t_w" "$(ratio "$o_w" "$t_w")"
  printf '%-8s %-22s %9s IOPS %7s IOPS %8s\n' "$label" "rand read 4 KiB qd16" "$o_q" "$t_q" "$(ratio "$o_q" "$t_q")"
done < "$work/results"
echo "(ratio = luksfuse / qemu-storage-daemon, same run; goals: raw >= 6x, qcow2 >= 4x for sequential read and write)"
