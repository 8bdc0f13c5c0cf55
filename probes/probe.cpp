#include "probes/probe.hpp"

#include "probes/http.hpp"
#include "probes/npm_registry.hpp"
#include "probes/prometheus.hpp"
#include "probes/tcp.hpp"

namespace lastgood::probes {

const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::ok: return "ok";
    case Outcome::fail: return "fail";
    case Outcome::error: return "error";
  }
  return "?";
}

ProbeResult begin_result(const std::string& service, const std::string& probe) {
  ProbeResult r;
  r.service = service;
  r.probe = probe;
  r.started_at = std::chrono::system_clock::now();
  r.outcome = Outcome::ok;
  return r;
}

void finish_result(ProbeResult& r) {
  if (r.outcome == Outcome::error) return;
  if (r.failures.empty()) {
    r.outcome = Outcome::ok;
    r.reason.clear();
    return;
  }
  r.outcome = Outcome::fail;
  r.reason.clear();
  for (const auto& f : r.failures) r.reason += (r.reason.empty() ? "" : "; ") + f.condition + ": " + f.reason;
}

nlohmann::json ProbeResult::to_json() const {
  nlohmann::json j{{"service", service},
                   {"probe", probe},
                   {"started_at", std::chrono::duration_cast<std::chrono::milliseconds>(started_at.time_since_epoch()).count()},
                   {"outcome", to_string(outcome)},
                   {"reason", reason},
                   {"duration_ms", timing.total.count()}};
  nlohmann::json f = nlohmann::json::array();
  for (const auto& x : failures) f.push_back({{"condition", x.condition}, {"reason", x.reason}});
  j["failures"] = f;
  if (timing.connect) j["connect_ms"] = timing.connect->count();
  if (timing.tls) j["tls_ms"] = timing.tls->count();
  if (timing.first_byte) j["first_byte_ms"] = timing.first_byte->count();
  if (http_status) j["http_status"] = *http_status;
  if (observed_release) j["observed_release"] = *observed_release;
  if (loop_stall_ms > 0) j["loop_stall_ms"] = loop_stall_ms;
  nlohmann::json d = details.is_null() ? nlohmann::json::object() : details;
  if (http) {
    d["connections_opened"] = http->connections_opened;
    if (http->redirects) d["redirects"] = http->redirects;
    if (http->reused_connection) d["reused_connection"] = *http->reused_connection;
    if (http->body_bytes) d["body_bytes"] = *http->body_bytes;
    if (http->cert_expires_in_s) d["cert_expires_in_s"] = *http->cert_expires_in_s;
  }
  if (!d.empty()) j["details"] = std::move(d);
  return j;
}

namespace {
// Every probe kind, one row each (docs/configuration.md has a section per kind).
constexpr const Kind* kKinds[] = {&http_kind, &tcp_kind, &npm_registry_kind, &prometheus_kind};
}  // namespace

std::vector<config::KindParser> kind_parsers() {
  std::vector<config::KindParser> out;
  for (const Kind* k : kKinds) out.push_back(k->config);
  return out;
}

std::unique_ptr<Probe> make_probe(boost::asio::any_io_executor ex, const std::string& service, const config::Probe& spec) {
  for (const Kind* k : kKinds)
    if (spec.kind == k->config.name) return k->make(std::move(ex), service, spec);
  throw std::logic_error("probe " + service + "/" + spec.name + ": no implementation of kind \"" + spec.kind + "\"");
}

}  // namespace lastgood::probes
