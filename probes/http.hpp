#pragma once
// The "http" probe kind: HTTP/HTTPS, one kept-alive connection per probe, expectations from the
// config's `expect` (docs/configuration.md, "http").
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "probes/probe.hpp"

namespace lastgood::probes {

struct HttpExpect {
  std::vector<config::StatusRange> status{{200, 299}};
  std::optional<std::string> body_contains;
  std::optional<std::string> body_matches;            // RE2 syntax (linear time), compiled by the probe
  std::map<std::string, std::string> header;          // header name -> exact value
  std::map<std::string, nlohmann::json> json;         // JSON pointer -> expected value
  std::optional<config::Duration> max_latency;
  std::optional<config::Duration> cert_valid_for;
};

struct HttpSpec final : config::KindSpec {
  std::string url;
  std::string method = "GET";
  std::map<std::string, std::string> headers;
  std::optional<std::string> body;
  int follow_redirects = 0;                            // how many redirects to follow; 0 = none
  bool redirect_to_http = false;                       // follow a redirect from https:// to http://
  std::optional<std::string> ca_file;                  // PEM bundle; default: system CA store
  bool insecure_skip_verify = false;
  std::size_t max_body_bytes = 1024 * 1024;
  HttpExpect expect;
};

extern const Kind http_kind;

}  // namespace lastgood::probes
