#include "config/secret.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace lastgood::config {

std::string Secret::describe() const {
  switch (source_) {
    case Source::env: return "environment variable " + ref_;
    case Source::file: return "file " + ref_;
    case Source::inline_value: return "inline value";
    case Source::none: break;
  }
  return "nothing";
}

std::optional<std::string> Secret::resolve() {
  if (source_ == Source::env) {
    const char* v = std::getenv(ref_.c_str());
    if (v == nullptr) return "environment variable " + ref_ + " is not set";
    if (*v == '\0') return "environment variable " + ref_ + " is set but empty";
    value_ = v;
  } else if (source_ == Source::file) {
    std::ifstream in(ref_, std::ios::binary);
    if (!in) return "cannot read secret file " + ref_;
    std::stringstream ss;
    ss << in.rdbuf();
    value_ = ss.str();
    while (!value_.empty() && (value_.back() == '\n' || value_.back() == '\r' || value_.back() == ' ')) value_.pop_back();
    if (value_.empty()) return "secret file " + ref_ + " is empty";
  }
  resolved_ = true;
  return std::nullopt;
}

std::string Secret::fresh(std::string* problem) const {
  if (source_ == Source::inline_value || source_ == Source::none) return value_;
  Secret again(source_, ref_);
  if (auto err = again.resolve()) {
    if (problem) *problem = *err + (value_.empty() ? "" : "; using the value read before");
    return value_;
  }
  value_ = std::move(again.value_);
  return value_;
}

}  // namespace lastgood::config
