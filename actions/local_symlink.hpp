#pragma once
#include "actions/action.hpp"

namespace lastgood::actions {
// `path/releases/*` and `path/current` on this host. Roll back: a symlink under a temp name in
// `path`, rename(2) over `current` (atomic), fsync of the directory.
std::unique_ptr<Action> make_local_symlink(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d);
}
