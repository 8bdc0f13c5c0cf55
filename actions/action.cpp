#include "actions/action.hpp"

#include <cctype>
#include <cstring>

#include "actions/command.hpp"
#include "actions/firebase_release.hpp"
#include "actions/http_api.hpp"
#include "actions/local_symlink.hpp"
#include "actions/npm_dist_tag.hpp"
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

Outcome refused_not_from(const Plan& p, const std::string& live) {
  Outcome out;
  out.live_changed = live.empty() ? std::string("unknown") : live;
  out.error = "refused: the live release is " + *out.live_changed + ", not " + p.from + " (deployed since the decision?); nothing was changed";
  return out;
}

std::string cap_output(std::string s, size_t max) {
  if (s.size() <= max) return s;
  const size_t dropped = s.size() - max;
  s.resize(max);
  return s + "\n[... " + std::to_string(dropped) + " more bytes dropped]";
}

std::string expand(const std::string& text, const Plan& p, bool encode) {
  auto enc = [&](const std::string& v) {
    if (!encode) return v;
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : v) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
      else {
        out += '%';
        out += hex[c >> 4];
        out += hex[c & 15];
      }
    }
    return out;
  };
  const std::string fence = std::to_string(p.fence);
  const std::pair<const char*, const std::string*> vars[] = {{"${service}", &p.context.service}, {"${from}", &p.from},
                                                             {"${to}", &p.to},  {"${reason}", &p.context.reason},
                                                             {"${trigger}", &p.context.trigger}, {"${fence}", &fence},
                                                             {"${action_id}", &p.action_id}};
  std::string out;
  for (size_t i = 0; i < text.size();) {
    bool hit = false;
    if (text[i] == '$') {
      for (const auto& [name, val] : vars) {
        const size_t n = std::strlen(name);
        if (text.compare(i, n, name) == 0) {
          out += enc(*val);
          i += n;
          hit = true;
          break;
        }
      }
    }
    if (!hit) out += text[i++];
  }
  return out;
}

namespace {
// Every deployment kind, one row each (docs/configuration.md has a section per kind).
constexpr const Kind* kKinds[] = {&local_symlink_kind, &ssh_symlink_kind, &firebase_hosting_kind,
                                  &npm_package_kind,   &http_api_kind,      &command_kind};
}  // namespace

std::vector<config::KindParser> kind_parsers() {
  std::vector<config::KindParser> out;
  for (const Kind* k : kKinds) out.push_back(k->config);
  return out;
}

std::unique_ptr<Action> make_action(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  for (const Kind* k : kKinds)
    if (d.kind == k->config.name) return k->make(std::move(ex), service, d);
  throw std::logic_error("service " + service + ": no implementation of deployment kind \"" + d.kind + "\"");
}

}  // namespace lastgood::actions
