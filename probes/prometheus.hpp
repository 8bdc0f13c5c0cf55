#pragma once
// The "prometheus" probe kind: an instant PromQL query (GET /api/v1/query) judged against
// expect.min / expect.max. ok when every returned sample is within bounds; fail when one is not
// (the worst sample and its labels are the evidence); error when Prometheus is unreachable or
// answers other than a success, when the query fails, when the answer carries warnings (partial
// data is not judged), or when the result is empty (per `empty`: "error", the default, or "ok",
// or "fail"). A NaN sample (0/0: no traffic) counts as no data.
#include <optional>
#include <string>

#include "probes/probe.hpp"

namespace lastgood::probes {

struct PrometheusSpec final : config::KindSpec {
  std::string url;    // Prometheus's base URL, e.g. http://127.0.0.1:9090
  std::string query;  // PromQL
  std::optional<double> min, max;
  std::string empty = "error";  // error | ok | fail
  std::optional<config::Secret> token;  // bearer token, read again at each use
};

extern const Kind prometheus_kind;

// The longest `[range]` (or subquery `[range:step]`) in a PromQL expression, for validate's
// warning that a signal lags the deploy by it; nullopt when there is none. Linear in the text.
std::optional<config::Duration> longest_range(const std::string& promql);

}  // namespace lastgood::probes
