#include "actions/action.hpp"

#include "actions/local_symlink.hpp"
#include "actions/ssh_symlink.hpp"

namespace lastgood::actions {

bool valid_release_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "." || name == "..") return false;
  if (name.find("..") != std::string::npos) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
                    c == '+' || c == '@' || c == ':' || c == '=';
    if (!ok) return false;
  }
  return name.front() != '-';
}

std::string cap_output(std::string s, size_t max) {
  if (s.size() <= max) return s;
  const size_t dropped = s.size() - max;
  s.resize(max);
  return s + "\n[... " + std::to_string(dropped) + " more bytes dropped]";
}

std::unique_ptr<Action> make_action(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  if (d.kind == "local_symlink") return make_local_symlink(std::move(ex), service, d);
  if (d.kind == "ssh_symlink") return make_ssh_symlink(std::move(ex), service, d);
  return nullptr;
}

}  // namespace lastgood::actions
