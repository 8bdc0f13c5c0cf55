#pragma once
// The "http_api" deployment kind, a gateway call: templated method, URL, headers and JSON body
// (${service} ${from} ${to} ${reason} ${trigger}), a bearer token from token_env/token_file, the
// expected status; optional `observe`: GET a URL and read the live version at a JSON pointer
// (same token).
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actions/action.hpp"

namespace lastgood::actions {

struct HttpApiSpec final : config::KindSpec {
  struct Rollback {
    std::string method = "POST";
    std::string url;
    std::map<std::string, std::string> headers;
    std::optional<nlohmann::json> body;  // any JSON; strings inside are templated
    std::optional<config::Secret> token;
    std::vector<config::StatusRange> expect_status{{200, 299}};
  };
  struct Observe {
    std::string url;
    std::string json_pointer;
  };
  std::optional<config::Duration> timeout;
  Rollback rollback;
  std::optional<Observe> observe;
};

extern const Kind http_api_kind;

}  // namespace lastgood::actions
