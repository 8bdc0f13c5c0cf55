# Thin wrapper over CMake. `make run` builds (Release) and runs the demo; `make test` builds and
# runs every test through ctest. Both install missing Debian packages first.
BUILD ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: bench-all bench-compare bench-scale deps build run test unit integration asan bench bench-policy clean fuzz soak deb

deps:
	scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# A Debian package of the built binary: $(BUILD)/lastgood_<version>_<arch>.deb (docs/operations.md).
deb: build
	scripts/make-deb $(BUILD)/watchdog/lastgood $(BUILD)

run: build
	$(BUILD)/watchdog/lastgood demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

integration: build
	cd $(BUILD) && ctest --output-on-failure -L integration

# ha.md's soak (kept out of `make test`): two replicas and a 3-member etcd through rounds of
# kill -9 / SIGSTOP / etcd member stops (SOAK_ROUNDS, 20 by default; about 2 minutes).
SOAK_ROUNDS ?= 20
soak: build
	cd $(BUILD) && LASTGOOD_SOAK_ROUNDS=$(SOAK_ROUNDS) ./tests/integration_tests "[soak]"

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
	cmake --build build-bench -j $(JOBS) --target lastgood pattern_floor
	LASTGOOD=build-bench/watchdog/lastgood PATTERN_FLOOR=build-bench/bench/pattern_floor python3 bench/compare.py $(BENCH_ARGS)

# Round 5's scale benches (docs/benchmarks.md): more targets than descriptors, and a long ledger
# at start. Each takes minutes; two binaries side by side: bench-compare below.
bench-scale:
	scripts/install-deps --bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build build-bench -j $(JOBS) --target lastgood
	LASTGOOD=build-bench/watchdog/lastgood python3 bench/many_targets.py --n 50000 --interval 5 --nofile 20000
	LASTGOOD=build-bench/watchdog/lastgood python3 bench/many_targets.py --n 100000 --interval 10 --nofile 20000 --runs 1
	python3 bench/ledger_start.py --entries 1000000 --after build-bench/watchdog/lastgood
	python3 bench/ledger_segments.py --entries 10000000 --after build-bench/watchdog/lastgood
	python3 bench/reload_scale.py --n 10000 --binary build-bench/watchdog/lastgood
	python3 bench/scrape_windows.py build-bench/watchdog/lastgood 50000

# Round 5's side-by-side comparisons of two binaries (targets 1 and 2): HTTPS kept alive and
# reconnecting (with blackbox_exporter and wrk over HTTPS), reconnecting without resumption, and
# plain HTTP with the pattern's floor, wrk and monit. BEFORE=path/to/an/older/lastgood (default:
# this build against itself, which still gives every peer's figure). About 40 minutes.
BEFORE ?= build-bench/watchdog/lastgood
bench-compare:
	scripts/install-deps --bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build build-bench -j $(JOBS) --target lastgood pattern_floor
	python3 bench/tls_compare.py --before $(BEFORE) --after build-bench/watchdog/lastgood --peers
	python3 bench/tls_compare.py --before $(BEFORE) --after build-bench/watchdog/lastgood --close --peers
	python3 bench/tls_compare.py --before $(BEFORE) --after build-bench/watchdog/lastgood --close --no-resume
	PATTERN_FLOOR=build-bench/bench/pattern_floor python3 bench/plain_compare.py --before $(BEFORE) --after build-bench/watchdog/lastgood

# Every table of docs/benchmarks.md in one go (a few hours): the side-by-side run, round 5's
# comparisons and scale benches, and the micro-benchmarks.
bench-all: bench bench-compare bench-scale bench-policy

# Policy micro-benchmark (Release build; results go in docs/benchmarks.md).
bench-policy: build
	$(BUILD)/bench/policy_bench
	$(BUILD)/bench/ledger_bench
	$(BUILD)/bench/safety_bench
	$(BUILD)/bench/metrics_bench

clean:
	rm -rf $(BUILD) build-asan build-bench

# libFuzzer harnesses (clang-15, ASan + UBSan), each run for FUZZ_SECONDS on a scratch copy of its
# seed corpus in fuzz/corpus/; prints each harness's executions and result. Findings are kept as
# build-fuzz/crash-*.
FUZZ_SECONDS ?= 60
FUZZERS = config url http_head http_body ledger alert router snapshot
fuzz:
	scripts/install-deps --fuzz
	CC=clang-15 CXX=clang++-15 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DLASTGOOD_FUZZ=ON
	cmake --build build-fuzz -j $(JOBS)
	@set -e; for f in $(FUZZERS); do \
	  rm -rf build-fuzz/corpus-$$f; mkdir -p build-fuzz/corpus-$$f; cp fuzz/corpus/$$f/* build-fuzz/corpus-$$f/; \
	  if (cd build-fuzz && ./fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 corpus-$$f > fuzz-$$f.log 2>&1); then r=ok; else r=FAILED; fi; \
	  echo "fuzz_$$f: $$r, $$(grep -o 'number_of_executed_units: [0-9]*' build-fuzz/fuzz-$$f.log | cut -d' ' -f2) executions, corpus $$(ls build-fuzz/corpus-$$f | wc -l) inputs"; \
	  if [ $$r = FAILED ]; then tail -30 build-fuzz/fuzz-$$f.log; exit 1; fi; \
	done
