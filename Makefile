# Concierge — build, run and test the appliance firmware.
#
#   make run     build and run on this machine with a data directory in ./var;
#                the setup page is http://127.0.0.1:8080/
#   make test    install what the tests need, then run every test
#   make bench   side-by-side benchmarks against the reference servers

GO        ?= go
BIN       := bin/concierge
DATA      ?= $(CURDIR)/var
GOFLAGS_STATIC := CGO_ENABLED=0

# Debian packages the integration tests drive as real peers and clients,
# and what the image test needs to build the box's kernel (image/kernel).
TEST_PACKAGES := iproute2 iputils-ping procps psmisc swaks postfix samba samba-common-bin nbtscan \
	python3 python3-impacket fetchmail mpop dnsmasq-base tshark dovecot-core dovecot-pop3d openssl smbclient \
	chromium isc-dhcp-client udhcpc qemu-system-x86 ovmf mtools \
	gcc make bc bison flex libc6-dev libelf-dev xz-utils fdisk chrony

# The setup page's browser tests drive Chromium with playwright-core, pinned
# in package.json and package-lock.json there and installed with npm ci.
E2E_DIR := appliance/web/e2e

.PHONY: all build run test test-deps unit bench fuzz clean image

all: build

build:
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN) ./cmd/concierge

# The firmware (docs/firmware.md): build/image/concierge.bundle, its
# manifest.json and disk.img. Reproducible; signed with the development key
# unless KEY=FILE names a hex ed25519 seed. The kernel is built from
# Debian's linux-source the first time (image/kernel/build.sh, a few
# minutes; cached in build/image-cache); KERNEL=debian takes Debian's
# linux-image-amd64 and its modules instead.
image:
	$(GO) run ./image/cmd/mkimage -out build/image $(if $(KEY),-key $(KEY)) $(if $(KERNEL),-kernel $(KERNEL))

# First run: prepare ./var with the setup page on http://127.0.0.1:8080/
# (and unprivileged ports when not root), then serve; the page's first-run
# wizard sets up the rest.
run: build
	@./scripts/first-run.sh $(BIN) $(DATA)
	./$(BIN) -data $(DATA) serve

test-deps:
	@./scripts/test-deps.sh $(TEST_PACKAGES)
	@./scripts/test-deps-node.sh $(E2E_DIR)
	$(GO) mod download

# The tests run under the race detector, which needs cgo in the test
# binaries only: the server binary the integration tests build
# (internal/testnet) and "make build" stay CGO_ENABLED=0 and static.
GOFLAGS_RACE := CGO_ENABLED=1

test: test-deps
	$(GO) vet ./...
	$(GOFLAGS_RACE) $(GO) test -race -count=1 -timeout 40m -p 1 ./...

unit:
	$(GOFLAGS_RACE) $(GO) test -race -short -count=1 ./...

# Short fuzzing of every network parser (the corpora in testdata/fuzz are
# also run by make test).
fuzz:
	./scripts/fuzz.sh 20s

bench: build test-deps
	./scripts/bench.sh

clean:
	rm -rf bin
