#pragma once
#include "actions/action.hpp"

namespace lastgood::actions {
// `rollback` and optional `observe` as argv lists (no shell) with ${service} ${from} ${to}
// ${reason} ${trigger}; `timeout` (default 2m) kills the process group; only `env_allow`
// variables are passed; the exit status is checked; output captured (capped).
std::unique_ptr<Action> make_command(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d);
}
