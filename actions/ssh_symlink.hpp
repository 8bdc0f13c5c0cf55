#pragma once
#include "actions/action.hpp"

namespace lastgood::actions {
// `path/releases/*` and `path/current` on a host over SSH (libssh2). Roll back with
// `ln -sfn releases/X current.tmp.N && mv -Tf current.tmp.N current`, then each `after_switch`
// command; a non-zero exit stops the sequence and is reported with its stderr.
std::unique_ptr<Action> make_ssh_symlink(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d);
}
