# The front door: `make` builds build/treemig, `make test` runs the whole
# suite, `make demo` runs a real migration on a generated tree. Each target
# installs the Debian packages it needs first (scripts/deps.sh).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps test-deps build test demo asan tsan bench clean

all: build

deps:
	@scripts/deps.sh build

test-deps:
	@scripts/deps.sh test

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: test-deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: test-deps
	@$(MAKE) --no-print-directory test BUILD=build-asan \
	  CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DTREEMIG_SANITIZE=address,undefined"

# The suite under ThreadSanitizer (the engine is threaded).
tsan: test-deps
	@$(MAKE) --no-print-directory test BUILD=build-tsan \
	  CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DTREEMIG_SANITIZE=thread"

demo: build
	@scripts/demo.sh $(BUILD)/treemig

bench: build
	@scripts/deps.sh bench
	@bench/discover.sh

clean:
	rm -rf build build-asan build-tsan
