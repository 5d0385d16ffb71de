# The front door: `make` builds build/treemig, `make test` runs the whole
# suite, `make demo` runs a real migration on a generated tree. Each target
# installs the Debian packages it needs first (scripts/deps.sh). The test
# tree (cmocka, python3) is configured only by the targets that run tests
# (-DTREEMIG_TESTS=ON): make, make demo and make bench need none of it.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps test-deps build test soak demo asan tsan fuzz bench check-src clean
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
# fuzzers run under both already: the fuzz label is left out).
asan: test-deps
	@$(MAKE) --no-print-directory test BUILD=build-asan CTEST_ARGS="-LE 'long|fuzz'" \
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
	@scripts/demo.sh $(BUILD)/treemig

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	@bench/discover.sh

# The banned-function check of src/, cli/ and include/ (scripts/check-src.sh).
check-src:
	@scripts/check-src.sh

clean:
	rm -rf build build-asan build-tsan build-fuzz build-fresh
