#pragma once
// The "http_api" deployment kind, a gateway call: one request or `steps` run in order (e.g. the
// gateway rollback, then the service-registry update), each a templated method, URL, headers and
// JSON body (${service} ${from} ${to} ${reason} ${trigger} ${action_id} ${fence}) and its expected
// status; a bearer token from token_env/token_file (a file read again at each use) on every
// request; `observe` (required): GET a URL and read the live version at a JSON pointer.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actions/action.hpp"

namespace lastgood::actions {

struct HttpApiSpec final : config::KindSpec {
  // One request of the rollback; strings in url, headers and body are templated.
  struct Step {
    std::string method = "POST";
    std::string url;
    std::map<std::string, std::string> headers;
    std::optional<nlohmann::json> body;  // any JSON; strings inside are templated
    std::vector<config::StatusRange> expect_status{{200, 299}};
  };
  struct Rollback {
    std::vector<Step> steps;  // run in order; the first that fails stops the sequence
    std::optional<config::Secret> token;  // applied to every step and to observe; read again at each use
    bool single = true;  // written as one request (not as "steps"): named so in errors
  };
  struct Observe {
    std::string url;
    std::string json_pointer;
  };
  std::optional<config::Duration> timeout;
  Rollback rollback;
  Observe observe;  // required: without the live release lastgood cannot decide
};

extern const Kind http_api_kind;

}  // namespace lastgood::actions
