# Plexus developer tasks. `make` (or `make help`) lists them; a target's
# description is its `## ` comment.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# mautrix-go's end-to-end encryption, which the client tests drive, is the
# pure-Go goolm implementation only with this tag (without it mautrix links
# libolm through cgo). Every go command here builds with it, so that vet,
# staticcheck and the tests see the same files.
export GOFLAGS := $(strip $(GOFLAGS) -tags=goolm)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Tests that need PostgreSQL read its URL from PLEXUS_TEST_POSTGRES and skip
# when it is unreachable, unless PLEXUS_REQUIRE_POSTGRES=1, which CI sets so
# that a missing database fails the run instead of silently skipping.
export PLEXUS_TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
ifdef CI
export PLEXUS_REQUIRE_POSTGRES ?= 1
# A cached pass proves nothing about this machine (PostgreSQL may be gone),
# so CI always runs the tests.
TESTFLAGS ?= -count=1
# The web client's browser tests skip without Chromium or Firefox on a
# developer's machine; in CI (where .ci/chromium.sh and .ci/firefox.sh
# install them) they must run.
export PLEXUS_REQUIRE_BROWSER ?= 1
endif

# Every package runs under the race detector except these, which are pure
# (no goroutines, no shared state) and whose large tables and fuzz corpora
# the detector would only slow down. Forgetting to list a pure package costs
# time; forgetting a concurrent one would cost safety, so the list is opt-out.
NORACE_PKGS ?= internal/cjson internal/signing internal/config internal/mxerr internal/layout \
	rooms/internal/pdu rooms/internal/auth rooms/internal/stateres rooms/internal/difftest

# Fuzz targets as dir:FuzzName. By default every Fuzz function in a
# *_test.go file, so a new fuzz test is picked up with no edit here; override
# to fuzz one: make fuzz FUZZ_TARGETS=./internal/cjson:FuzzParse FUZZTIME=5m
FUZZ_TARGETS ?= $(shell grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed -E 's|^(.*)/[^/]*_test\.go:func |\1:|' | sort)
FUZZTIME ?= 10s

empty :=
space := $(empty) $(empty)
NORACE_RE := /($(subst $(space),|,$(strip $(NORACE_PKGS))))$$

.PHONY: help build run node-setup web test bench lint fuzz clean

help: ## list the targets
	@echo "Usage: make <target>"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-7s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: web ## build bin/plexus, stamped with the git version
	go build -ldflags "$(LDFLAGS)" -o bin/plexus ./cmd/plexus

run: build ## build and run `plexus serve` with defaults (SQLite in ./plexus-data); extra flags: make run ARGS="--log-level debug"
	bin/plexus serve $(ARGS)

node-setup: ## install Node.js and the cable package's ActionCable test harness if missing (quick when done)
	@bash .ci/node.sh

# The bundle is embedded in the binary (web/dist, go:embed); npm ci runs only
# when web/node_modules is missing or older than the lockfile; esbuild (a Go
# module) bundles offline.
web: node-setup ## install the web client's npm packages from the lockfile and bundle it into web/dist
	@if ! cmp -s web/package-lock.json web/node_modules/.plexus-lock.json; then \
		echo "npm ci in web"; \
		(cd web && npm ci --no-audit --no-fund --loglevel=error) && cp web/package-lock.json web/node_modules/.plexus-lock.json; \
	fi
	go run ./web/build

test: node-setup web ## run every test; -race except on NORACE_PKGS; PostgreSQL at PLEXUS_TEST_POSTGRES
	@set -e; \
	all=$$(go list ./...); \
	race=$$(grep -vE '$(NORACE_RE)' <<<"$$all" || true); \
	norace=$$(grep -E '$(NORACE_RE)' <<<"$$all" || true); \
	if [ -n "$$race" ]; then echo "go test -race $$(wc -l <<<"$$race") packages"; go test $(TESTFLAGS) -race $$race; fi; \
	if [ -n "$$norace" ]; then echo "go test $$(wc -l <<<"$$norace") packages"; go test $(TESTFLAGS) $$norace; fi

bench: ## run every benchmark once and print its figures
	go test -run '^$$' -bench . -benchmem -timeout 60m ./...

lint: web ## gofmt, go vet and staticcheck; fails on any finding
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -w needed on:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

fuzz: ## fuzz each target in FUZZ_TARGETS for FUZZTIME (default 10s each)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$${t##*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

clean: ## remove build output (never ./plexus-data: it holds the signing key)
	rm -rf bin
