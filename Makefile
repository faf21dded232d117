# luksfuse — build, test, demo, benchmark.
#   make demo   show the main job end to end on a demo volume it creates
#   make test   install missing system packages, then fmt check, clippy, all tests
#   make bench  benchmarks against cryptsetup, QEMU and nbdkit (not part of the tests);
#               BENCH_ONLY=qd1,loop make bench runs only those sections (see contrib/bench.sh)
#   make bench-xts  XTS throughput of each implementation against openssl speed
#   make bench-ciphers  every cipher x mode through the sector interface, against raw and openssl
#   make bench-volume  the volume layer alone: 1 MiB requests through Volume over a tmpfs file
#   make crashtest  the crash replayer with a larger budget (payload data, in-place encryption,
#               header changes: states checked and violations per scenario; CRASH_STATES=N)
#   make soak   SOAK_MINUTES (10) of verified fio load and remount cycles, RSS watched (root)
#   make fuzz   seed the fuzz corpora, then run each cargo-fuzz target FUZZ_SECONDS (see below)

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# command:package pairs the tests need
NEEDS := cryptsetup:cryptsetup-bin qemu-img:qemu-utils qemu-io:qemu-utils \
         qemu-storage-daemon:qemu-utils fusermount3:fuse3 mkfs.ext4:e2fsprogs \
         e2fsck:e2fsprogs losetup:mount pvcreate:lvm2 mkfs.vfat:dosfstools \
         mkswap:util-linux blkid:util-linux sfdisk:fdisk sgdisk:gdisk fuse2fs:fuse2fs \
         strip:binutils

# Installation directories (make install PREFIX=/usr DESTDIR=/tmp/pkg).
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
# mount(8) looks for mount helpers only in /sbin (and /sbin/fs.d, /sbin/fs).
SBINDIR ?= /sbin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/luksfuse
# The binary to install (make install builds it first).
BIN ?= target/release/luksfuse
# Installed binaries lose their debug info (a release build has none; any other BIN may).
STRIP ?= strip
ASSETS := target/assets

.PHONY: all build deps test check demo bench soak bench-xts bench-ciphers bench-volume fuzz clean install install-files uninstall crashtest

all: build

build:
	$(CARGO) build --release

# Installs the Debian packages whose commands are missing (no-op when all are present).
deps:
	@missing=""; for pair in $(NEEDS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  PATH="$$PATH:/sbin:/usr/sbin" command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

test: deps check
	@# Library, binary and integration tests. The examples (benchmarks) are built and linted
	@# by clippy --all-targets above; running them as tests would only add empty
	@# "0 passed" suites after the real ones.
	$(CARGO) test --lib --bins --tests

# The crash replayers (tests/crash_replay.rs, tests/crash_headers.rs) with a larger budget of states per
# scenario (CRASH_STATES=N sets it), one scenario at a time, with its report.
crashtest: deps
	CRASHTEST=1 $(CARGO) test --release --test crash_replay --test crash_headers -- --nocapture --test-threads=1

demo: deps
	$(CARGO) build --release
	bash contrib/demo.sh target/release/luksfuse

# fio for the I/O tests, bc for the unlock ratios, nbdkit and nbdfuse (its luks filter is the
# second peer; Debian 12 ships nbdfuse in libnbd-bin, which apt picks for the name), matplotlib (for the system python3, which
# bench.sh prefers when another python3 on PATH lacks it) for the chart.
bench: deps
	@missing=""; command -v fio >/dev/null || missing="$$missing fio"; \
	command -v bc >/dev/null || missing="$$missing bc"; \
	command -v nbdkit >/dev/null || missing="$$missing nbdkit"; \
	command -v nbdfuse >/dev/null || missing="$$missing nbdfuse"; \
	/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || missing="$$missing python3-matplotlib"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(CARGO) build --profile profiling --bin luksfuse --example plainfuse
	bash contrib/bench.sh target/profiling/luksfuse target/profiling/examples/plainfuse

# make soak [SOAK_MINUTES=10]: contrib/soak.sh on a release build (its header has the
# details): fio with verify=crc32c through a mount and through ext4 on a loop device over it,
# remount cycles of a second mount, the daemon's RSS watched; payloads in SOAK_DIR
# (/dev/shm), reports kept in target/soak/. Needs root (losetup, mount): run through sudo
# otherwise. Not part of make test.
SOAK_MINUTES ?= 10
SOAK_DIR ?= /dev/shm
soak: deps
	@command -v fio >/dev/null || { echo "installing: fio"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends fio; }
	$(CARGO) build --release
	$(SUDO) env SOAK_MINUTES=$(SOAK_MINUTES) SOAK_DIR=$(SOAK_DIR) \
	  bash contrib/soak.sh target/release/luksfuse

# XTS_REPS repetitions (median reported), single thread, ratios against openssl speed.
XTS_REPS ?= 5
bench-xts:
	$(CARGO) run --profile profiling --example xts_bench -- $(XTS_REPS)

# CIPHER_REPS repetitions (median reported), single thread: each cipher x mode through
# SectorCipher (512- and 4096-byte sectors) against the crate's raw multi-block speed, and
# openssl speed where OpenSSL has the cipher. A few minutes; CIPHERS=cbc keeps the specs
# containing "cbc".
CIPHER_REPS ?= 3
CIPHERS ?=
bench-ciphers:
	$(CARGO) run --profile profiling --example cipher_bench -- $(CIPHER_REPS) $(CIPHERS)

# The volume layer alone, no FUSE (examples/volume_bench.rs): VOLUME_MIB MiB written and read
# in 1 MiB requests over a tmpfs file, VOLUME_REPS repetitions; MB/s by the clock and per CPU
# second of the I/O threads, to compare changes to the volume's I/O paths.
VOLUME_MIB ?= 256
VOLUME_REPS ?= 5
bench-volume:
	$(CARGO) run --profile profiling --example volume_bench -- \
	  /dev/shm/luksfuse-volume-bench $(VOLUME_MIB) $(VOLUME_REPS)

install: build install-files

# Installs $(BIN) and what is generated from it (man pages, completions), the mount helper
# links and the systemd unit, without building.
install-files:
	rm -rf $(ASSETS) && $(BIN) generate-assets $(ASSETS)
	install -Dm755 $(BIN) $(DESTDIR)$(BINDIR)/luksfuse
	$(STRIP) --strip-debug $(DESTDIR)$(BINDIR)/luksfuse
	install -d $(DESTDIR)$(SBINDIR)
	ln -sf $(BINDIR)/luksfuse $(DESTDIR)$(SBINDIR)/mount.fuse.luksfuse
	ln -sf $(BINDIR)/luksfuse $(DESTDIR)$(SBINDIR)/mount.luksfuse
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m644 $(ASSETS)/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -Dm644 $(ASSETS)/completions/luksfuse.bash $(DESTDIR)$(BASHCOMPDIR)/luksfuse
	install -Dm644 $(ASSETS)/completions/_luksfuse $(DESTDIR)$(ZSHCOMPDIR)/_luksfuse
	install -Dm644 $(ASSETS)/completions/luksfuse.fish $(DESTDIR)$(FISHCOMPDIR)/luksfuse.fish
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|@BINDIR@|$(BINDIR)|g' contrib/luksfuse@.service > $(DESTDIR)$(UNITDIR)/luksfuse@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/luksfuse@.service
	install -Dm644 contrib/example.conf $(DESTDIR)$(DOCDIR)/example.conf
	install -Dm644 README.md $(DESTDIR)$(DOCDIR)/README.md

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/luksfuse $(DESTDIR)$(SBINDIR)/mount.fuse.luksfuse \
	  $(DESTDIR)$(SBINDIR)/mount.luksfuse $(DESTDIR)$(MANDIR)/man1/luksfuse*.1 \
	  $(DESTDIR)$(BASHCOMPDIR)/luksfuse $(DESTDIR)$(ZSHCOMPDIR)/_luksfuse \
	  $(DESTDIR)$(FISHCOMPDIR)/luksfuse.fish $(DESTDIR)$(UNITDIR)/luksfuse@.service
	rm -rf $(DESTDIR)$(DOCDIR)

# make fuzz [FUZZ_SECONDS=60]: makes seeds with cryptsetup and qemu-img (fuzz/seed.sh), then
# runs the targets one after another for FUZZ_SECONDS each, at the lowest CPU priority.
# Needs cargo-fuzz (installed if missing); the stable toolchain is enough because
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags. The build has AddressSanitizer and
# debug assertions (overflow checks); an allocation over 512 MiB, an RSS over 2 GiB or an
# input taking over 30 s counts as a crash. Corpora grow in fuzz/corpus/<target>/, crashes
# land in fuzz/artifacts/<target>/ (both untracked). fuzz/README.md has the details.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := luks1_header luks2_header unlock qcow2_open
FUZZ_FLAGS = -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -malloc_limit_mb=512 \
             -timeout=30 -print_final_stats=1

fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	bash fuzz/seed.sh
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build
	@for t in $(FUZZ_TARGETS); do \
	  case $$t in qcow2_open) len=65536;; *) len=327680;; esac; \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  RUSTC_BOOTSTRAP=1 nice -n 19 $(CARGO) fuzz run $$t -- $(FUZZ_FLAGS) -max_len=$$len \
	    || exit 1; \
	done

clean:
	$(CARGO) clean
