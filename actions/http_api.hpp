#pragma once
#include "actions/action.hpp"

namespace lastgood::actions {
// A gateway call: templated method, URL, headers and JSON body (${service} ${from} ${to}
// ${reason} ${trigger}), a bearer token from token_env/token_file, the expected status; optional
// `observe`: GET a URL and read the live version at a JSON pointer (same token).
std::unique_ptr<Action> make_http_api(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d);
}
