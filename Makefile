# luksfuse — build, test, demo, benchmark.
#   make demo   show the main job end to end on a demo volume it creates
#   make test   install missing system packages, then fmt check, clippy, all tests
#   make bench  benchmarks against cryptsetup and QEMU (not part of the tests)
#   make fuzz   seed the fuzz corpora, then run each cargo-fuzz target FUZZ_SECONDS (see below)

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# command:package pairs the tests need
NEEDS := cryptsetup:cryptsetup-bin qemu-img:qemu-utils qemu-io:qemu-utils \
         qemu-storage-daemon:qemu-utils fusermount3:fuse3 mkfs.ext4:e2fsprogs \
         e2fsck:e2fsprogs losetup:mount

.PHONY: all build deps test check demo bench fuzz clean

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
	$(CARGO) test --all-targets

demo: deps
	$(CARGO) build --release
	bash contrib/demo.sh target/release/luksfuse

bench: deps
	@command -v fio >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq fio; }
	$(CARGO) build --release
	bash contrib/bench.sh target/release/luksfuse

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
