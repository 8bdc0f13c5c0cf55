#pragma once
// A secret read from an environment variable or a file. Its value is never formatted,
// logged or serialised: the only way out is value(), used where the secret is sent.
#include <optional>
#include <string>

namespace lastgood::config {

class Secret {
 public:
  enum class Source { none, env, file, inline_value };

  Secret() = default;
  static Secret from_env(std::string var) { return Secret(Source::env, std::move(var)); }
  static Secret from_file(std::string path) { return Secret(Source::file, std::move(path)); }
  // For values that are not confidential but share the shape (a webhook url written inline).
  static Secret from_inline(std::string v) { Secret s(Source::inline_value, "inline"); s.value_ = std::move(v); return s; }

  Source source() const { return source_; }
  bool empty() const { return source_ == Source::none; }
  // Where it comes from, safe to print: "env LASTGOOD_TOKEN" or "file /etc/x".
  std::string describe() const;
  // Reads it; an error message (naming the variable or file, never the value) on failure.
  std::optional<std::string> resolve();
  const std::string& value() const { return value_; }
  // The value as of now, for a secret used long after start: a file is read again (a rotated
  // token is used without a restart), an environment variable looked up again. When it cannot be
  // read now, the value read last is kept and `problem` says why (never the value).
  std::string fresh(std::string* problem = nullptr) const;
  bool resolved() const { return resolved_ || source_ == Source::inline_value; }

 private:
  Secret(Source s, std::string ref) : source_(s), ref_(std::move(ref)) {}
  Source source_ = Source::none;
  std::string ref_;
  mutable std::string value_;
  bool resolved_ = false;
};

}  // namespace lastgood::config
