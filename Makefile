# luksfuse — build, test, demo, benchmark.
#   make demo   show the main job end to end on a demo volume it creates
#   make test   install missing system packages, then fmt check, clippy, all tests
#   make bench  benchmarks against cryptsetup and QEMU (not part of the tests)

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# command:package pairs the tests need
NEEDS := cryptsetup:cryptsetup-bin qemu-img:qemu-utils qemu-io:qemu-utils \
         qemu-storage-daemon:qemu-utils fusermount3:fuse3 mkfs.ext4:e2fsprogs \
         e2fsck:e2fsprogs losetup:mount

.PHONY: all build deps test check demo bench clean

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

clean:
	$(CARGO) clean
