#pragma once
#include "actions/action.hpp"

namespace lastgood::actions {
// npm_package: observe the tagged version and its publish time; roll back by moving the tag
// (`retag`), then per `strategy` deprecate the bad version or unpublish it (only with
// allow_unpublish and under 72 h after publish; otherwise deprecate, saying why).
std::unique_ptr<Action> make_npm_dist_tag(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d);
}
