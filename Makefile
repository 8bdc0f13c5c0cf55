# Thin wrapper over CMake. `make run` builds (Release) and runs the demo; `make test` builds and
# runs every test through ctest. Both install missing Debian packages first.
BUILD ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps build run test unit integration asan bench bench-policy clean

deps:
	scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/watchdog/lastgood demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

integration: build
	cd $(BUILD) && ctest --output-on-failure -L integration

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLASTGOOD_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS) --target unit_tests
	cd build-asan && ctest --output-on-failure -L unit -j $(JOBS)

# Side by side with blackbox_exporter, monit and wrk on one loopback nginx (about 20 minutes;
# BENCH_ARGS=--quick for a 2-minute smoke run). Tables go to bench/results/ and docs/benchmarks.md.
bench:
	scripts/install-deps --bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build build-bench -j $(JOBS) --target lastgood
	LASTGOOD=build-bench/watchdog/lastgood python3 bench/compare.py $(BENCH_ARGS)

# Policy micro-benchmark (Release build; results go in docs/benchmarks.md).
bench-policy: build
	$(BUILD)/bench/policy_bench
	$(BUILD)/bench/ledger_bench
	$(BUILD)/bench/safety_bench

clean:
	rm -rf $(BUILD) build-asan build-bench
