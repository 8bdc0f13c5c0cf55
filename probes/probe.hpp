#pragma once
// The probe interface: a probe observes one target and reports a ProbeResult. It never acts.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace lastgood::probes {

// ok: the target behaved. fail: the target misbehaved (counts towards breaches).
// error: the probe could not judge (e.g. the watcher's own DNS is broken); feeds "inconclusive".
enum class Outcome { ok, fail, error };
const char* to_string(Outcome o);

// One failed expectation: which condition (as named in config: "status", "body_contains",
// "timeout", "tls", ...) and a human-readable reason with the measured value.
struct Failure {
  std::string condition;
  std::string reason;
};

struct Timing {
  using ms = std::chrono::duration<double, std::milli>;
  std::optional<ms> connect, tls, first_byte;  // absent when the phase did not happen (reused connection)
  ms total{0};
};

// What an HTTP run saw of its connection, kept as plain fields: a result is made for every run
// and the last one of each probe is kept, so no map is built per run.
struct HttpDetails {
  int connections_opened = 0;
  int redirects = 0;
  std::optional<bool> reused_connection;  // absent when no response came
  std::optional<std::size_t> body_bytes;
  std::optional<long long> cert_expires_in_s;
};

struct ProbeResult {
  std::string service;
  std::string probe;
  std::chrono::system_clock::time_point started_at;
  Outcome outcome = Outcome::error;
  std::string reason;                    // "" when ok; the failures joined otherwise
  std::vector<Failure> failures;
  Timing timing;
  std::optional<int> http_status;
  std::optional<std::string> observed_release;
  std::optional<HttpDetails> http;                 // shown under "details" in to_json()
  nlohmann::json details;  // other probe kinds' findings (null until one is set: no map per run)
  // > 0: lastgood's own event loop was this far behind during the run (watchdog/loop_stall.hpp),
  // so the run's timing is lastgood's as much as the target's: its latency is left out of latency
  // rules, and a timeout or max_latency failure made the run `error`.
  float loop_stall_ms = 0;

  nlohmann::json to_json() const;
};

// A result for a run starting now: outcome ok until a failure is added.
ProbeResult begin_result(const std::string& service, const std::string& probe);
// Builds a result from failures: ok when there are none.
void finish_result(ProbeResult& r);

// Where a run started with Probe::start() reports its result.
class RunSink {
 public:
  virtual void run_done(std::uint32_t tag, ProbeResult&& result) = 0;

 protected:
  ~RunSink() = default;
};

class Probe {
 public:
  virtual ~Probe() = default;
  // Runs one check. Must complete by the configured timeout (it owns that deadline) and must
  // report routine failures as values; it is never called again before the previous run ends.
  virtual boost::asio::awaitable<ProbeResult> run() = 0;
  // The same run without a coroutine, for a probe whose steady state allows it (the HTTP probe on
  // a kept-alive connection: docs/benchmarks.md). true: the run has started and sink.run_done(tag)
  // is called exactly once, later, on the loop. false (the default): nothing was started; the
  // caller co_awaits run().
  virtual bool start(RunSink& /*sink*/, std::uint32_t /*tag*/) { return false; }
  virtual const config::Probe& spec() const = 0;
};

// A probe kind, defined in its own file (probes/<kind>.cpp) and listed once in probe.cpp: the
// parser of its config keys into its typed spec, and the factory that makes a probe from them.
// The probe refers to `spec` (it does not copy it): the config is immutable and must outlive
// every probe made from it.
struct Kind {
  config::KindParser config;
  std::unique_ptr<Probe> (*make)(boost::asio::any_io_executor ex, const std::string& service, const config::Probe& spec);
};

// The parsers of every kind, for config::load (the composition root's lastgood::kinds()).
std::vector<config::KindParser> kind_parsers();
// A probe of spec.kind. Throws std::logic_error for a kind missing from the table (config/ only
// accepts the table's kinds, so that is lastgood's bug, refused at start).
std::unique_ptr<Probe> make_probe(boost::asio::any_io_executor ex, const std::string& service, const config::Probe& spec);

}  // namespace lastgood::probes
