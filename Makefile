# The front door: `make` builds build/treemig, `make test` runs the whole
# suite, `make demo` runs a real migration on a generated tree. Each target
# installs the Debian packages it needs first (scripts/deps.sh). The test
# tree (cmocka, python3) is configured only by the targets that run tests
# (-DTREEMIG_TESTS=ON): make, make demo and make bench need none of it.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
# make install: where (GNU install dirs below it) and a staging root
PREFIX ?= /usr/local
DESTDIR ?=
# make deb: the build folder of the packages
DEB_BUILD ?= build-deb

.PHONY: all deps test-deps build test soak demo asan tsan fuzz bench check-src clean \
        install uninstall deb deb-deps
CTEST_ARGS ?= -LE long

all: build

deps:
	@scripts/deps.sh build

test-deps:
	@scripts/deps.sh test

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: test-deps
	@cmake -S . -B $(BUILD) -DTREEMIG_TESTS=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer (the
# fuzzers run under both already: the fuzz label is left out; so are the
# install and deb labels, which build their own uninstrumented tree).
asan: test-deps
	@$(MAKE) --no-print-directory test BUILD=build-asan \
	  CTEST_ARGS="-LE 'long|fuzz|install|deb'" \
	  CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DTREEMIG_SANITIZE=address,undefined"

# The unit tests and the most threaded integration tests under
# ThreadSanitizer.
tsan: test-deps
	@$(MAKE) --no-print-directory test BUILD=build-tsan CTEST_ARGS="-L 'unit|threaded'" \
	  CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DTREEMIG_SANITIZE=thread"

# Soak runs (label long): the crash loops with 24 kill points each and the
# strided allocation sweep over SQLite's allocations too (tens of minutes).
soak: test-deps
	@$(MAKE) --no-print-directory test CTEST_ARGS="-L long"

# Each libFuzzer target for 10 minutes, one after the other, on a corpus
# kept in build-fuzz/corpus (docs/fuzzing.md).
fuzz: test-deps
	@scripts/fuzz.sh long 600

demo: build
	@DEMO_DIR=$(BUILD)/demo scripts/demo.sh $(BUILD)/treemig

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	@bench/discover.sh

# The banned-function check of src/, cli/ and include/ (scripts/check-src.sh).
check-src:
	@scripts/check-src.sh

# make install [PREFIX=/usr/local] [DESTDIR=/staging]: bin/treemig, the
# shared and static libraries, treemig.h, treemig.pc, the man pages and the
# bash completion (README, "Installing"). make uninstall removes what the
# last make install from $(BUILD) installed ($(BUILD)/installed_files.txt).
install: deps
	@cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX="$(PREFIX)" $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@scripts/install.sh install $(BUILD) "$(DESTDIR)"

uninstall:
	@scripts/install.sh uninstall $(BUILD)

# The Debian packages treemig, libtreemigN and libtreemig-dev, built with
# CPack in $(DEB_BUILD) and checked with lintian (docs/packaging.md).
deb-deps:
	@scripts/deps.sh deb

deb: deb-deps
	@JOBS=$(JOBS) scripts/deb.sh $(DEB_BUILD)

clean:
	rm -rf build build-asan build-tsan build-fuzz build-deb build-fresh
