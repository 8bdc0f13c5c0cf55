#include "config/yaml.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include "config/reader.hpp"

namespace lastgood::config {

namespace {

using nlohmann::json;

constexpr rlim_t kChildMemory = 1024ull << 20;
constexpr rlim_t kChildSeconds = 10;

bool all_of(std::string_view s, int (*pred)(int)) {
  if (s.empty()) return false;
  for (unsigned char ch : s)
    if (!pred(ch)) return false;
  return true;
}

int is_octal(int c) { return c >= '0' && c <= '7'; }

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?  (YAML 1.2 core schema)
bool is_float_text(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++exp;
    if (exp == 0) return false;
  }
  return i == s.size();
}

class Converter {
 public:
  Converter(YamlResult& r, const YamlLimits& l) : r_(r), l_(l) {}

  bool failed() const { return !r_.problems.empty(); }

  void error(const std::string& ptr, std::string msg) {
    if (r_.problems.size() < 20) r_.problems.emplace_back(ptr, std::move(msg));
  }

  json convert(const YAML::Node& n, const std::string& ptr, size_t depth) {
    if (failed()) return nullptr;
    if (depth > l_.max_depth) {
      error(ptr, "nested deeper than " + std::to_string(l_.max_depth) + " levels (or an alias that contains itself): not a lastgood config");
      return nullptr;
    }
    if (++nodes_ > l_.max_nodes) {
      error(ptr, "more than " + std::to_string(l_.max_nodes) + " values once aliases are expanded: not a lastgood config");
      return nullptr;
    }
    switch (n.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return nullptr;
      case YAML::NodeType::Scalar:
        return scalar(n, ptr);
      case YAML::NodeType::Sequence: {
        json a = json::array();
        size_t i = 0;
        for (auto it = n.begin(); it != n.end() && !failed(); ++it, ++i) {
          const std::string p = ptr + "/" + std::to_string(i);
          const YAML::Node item = *it;
          note_line(p, item.Mark());
          a.push_back(convert(item, p, depth + 1));
        }
        return a;
      }
      case YAML::NodeType::Map:
        return mapping(n, ptr, depth);
    }
    return nullptr;
  }

 private:
  void note_line(const std::string& ptr, const YAML::Mark& m) {
    if (m.line >= 0 && r_.lines.size() < 1'000'000) r_.lines.emplace(ptr, m.line + 1);
  }

  static int line(const YAML::Mark& m) { return m.line >= 0 ? m.line + 1 : 0; }

  bool charge(size_t bytes, const std::string& ptr) {
    bytes_ += bytes;
    if (bytes_ > l_.max_bytes) {
      error(ptr, "more than " + std::to_string(l_.max_bytes >> 20) + " MiB of text once aliases are expanded: not a lastgood config");
      return false;
    }
    return true;
  }

  json mapping(const YAML::Node& n, const std::string& ptr, size_t depth) {
    json o = json::object();
    std::map<std::string, int> seen;  // key -> line
    std::vector<YAML::Node> merges;
    for (auto it = n.begin(); it != n.end() && !failed(); ++it) {
      // Copies: `it->first` is a member of a temporary (yaml-cpp iterators return proxies).
      const YAML::Node k = it->first;
      const YAML::Node v = it->second;
      if (!k.IsScalar()) {
        error(ptr, std::string("a key at line ") + std::to_string(line(k.Mark())) + " is not a plain string (a list or a mapping used as a key)");
        return o;
      }
      const std::string key = k.Scalar();
      if (!charge(key.size(), ptr)) return o;
      if (key == "<<" && k.Tag() == "?") {
        merges.push_back(v);
        continue;
      }
      const std::string p = ptr + "/" + detail::escape_token(key);
      auto [at, fresh] = seen.emplace(key, line(k.Mark()));
      if (!fresh) {
        error(p, "the key \"" + key.substr(0, 64) + "\" is given twice in this mapping, at lines " + std::to_string(at->second) + " and " +
                     std::to_string(line(k.Mark())) + ": give it once");
        return o;
      }
      note_line(p, k.Mark());
      o[key] = convert(v, p, depth + 1);
    }
    // `<<: *base` or `<<: [*a, *b]`: keys written here win, then the first merged mapping's.
    for (const auto& m : merges) {
      std::vector<YAML::Node> sources;
      if (m.IsMap()) sources.push_back(m);
      else if (m.IsSequence())
        for (auto it = m.begin(); it != m.end(); ++it) sources.push_back(*it);
      else
        sources.push_back(m);  // refused below
      for (const auto& s : sources) {
        if (!s.IsMap()) {
          error(ptr, "\"<<\" at line " + std::to_string(line(m.Mark())) + " merges only mappings (an alias to a mapping, or a list of them)");
          return o;
        }
        json merged = mapping(s, ptr, depth + 1);
        if (failed()) return o;
        for (auto& [key, value] : merged.items())
          if (!o.contains(key)) o[key] = std::move(value);
      }
    }
    return o;
  }

  json scalar(const YAML::Node& n, const std::string& ptr) {
    const std::string& s = n.Scalar();
    if (!charge(s.size(), ptr)) return nullptr;
    const std::string& tag = n.Tag();
    if (tag == "!" || tag == "tag:yaml.org,2002:str") return s;  // quoted, or !!str
    if (tag != "?" && tag != "tag:yaml.org,2002:int" && tag != "tag:yaml.org,2002:float" && tag != "tag:yaml.org,2002:bool" &&
        tag != "tag:yaml.org,2002:null") {
      error(ptr, "the tag \"" + tag.substr(0, 64) + "\" is not understood: lastgood reads plain YAML (strings, numbers, true/false, null, lists, mappings)");
      return nullptr;
    }
    if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    std::string_view v = s;
    const bool neg = !v.empty() && v.front() == '-';
    std::string_view digits = (!v.empty() && (v.front() == '-' || v.front() == '+')) ? v.substr(1) : v;
    if (all_of(digits, [](int c) { return std::isdigit(c); })) {
      long long i = 0;
      auto [end, ec] = std::from_chars(v.data() + (v.front() == '+' ? 1 : 0), v.data() + v.size(), i);
      if (ec == std::errc() && end == v.data() + v.size()) return i;
      unsigned long long u = 0;
      auto [end2, ec2] = std::from_chars(digits.data(), digits.data() + digits.size(), u);
      if (!neg && ec2 == std::errc() && end2 == digits.data() + digits.size()) return u;
      error(ptr, "the number " + s.substr(0, 40) + " is out of range");
      return nullptr;
    }
    if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'o')) {
      const bool hex = v[1] == 'x';
      std::string_view body = v.substr(2);
      if (hex ? all_of(body, [](int c) { return std::isxdigit(c); }) : all_of(body, is_octal)) {
        unsigned long long u = 0;
        auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), u, hex ? 16 : 8);
        if (ec == std::errc() && end == body.data() + body.size()) return u;
        error(ptr, "the number " + s.substr(0, 40) + " is out of range");
        return nullptr;
      }
    }
    if (is_float_text(v)) {
      const double d = std::strtod(s.c_str(), nullptr);
      if (!std::isfinite(d)) {
        error(ptr, "the number " + s.substr(0, 40) + " is out of range");
        return nullptr;
      }
      return d;
    }
    static const std::set<std::string> special = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"};
    if (special.count(s)) {
      error(ptr, "expected a finite number, found " + s);
      return nullptr;
    }
    if (tag != "?") {
      error(ptr, "\"" + s.substr(0, 40) + "\" is not a " + tag.substr(18));
      return nullptr;
    }
    return s;
  }

  YamlResult& r_;
  const YamlLimits& l_;
  size_t nodes_ = 0;
  size_t bytes_ = 0;
};

}  // namespace

int YamlResult::line_of(std::string pointer) const {
  for (;;) {
    auto it = lines.find(pointer);
    if (it != lines.end()) return it->second;
    auto slash = pointer.rfind('/');
    if (slash == std::string::npos) return 0;
    pointer.resize(slash);
  }
}

bool is_yaml_name(const std::string& name) {
  auto ends = [&](const char* suffix) {
    const std::string s = suffix;
    return name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".yaml") || ends(".yml") || ends(".YAML") || ends(".YML");
}

namespace {

YamlResult read_yaml(const std::string& text, const YamlLimits& limits) {
  YamlResult r;
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::DeepRecursion& e) {
    r.problems.emplace_back("", "not valid YAML: nested deeper than " + std::to_string(e.depth()) + " levels at line " + std::to_string(e.mark.line + 1) + ": not a lastgood config");
    return r;
  } catch (const YAML::ParserException& e) {
    // e.msg is the parser's reason; the text itself is never quoted back.
    r.problems.emplace_back("", "not valid YAML: line " + std::to_string(e.mark.line + 1) + ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
    return r;
  } catch (const std::exception& e) {
    // yaml-cpp's own limits (its depth guard) and allocation failures.
    r.problems.emplace_back("", std::string("not valid YAML: ") + e.what());
    return r;
  }
  if (docs.empty()) {
    r.problems.emplace_back("", "the file is empty: expected a mapping (the config's top level)");
    return r;
  }
  if (docs.size() > 1) {
    r.problems.emplace_back("", "the file holds " + std::to_string(docs.size()) + " YAML documents (separated by ---): a config is one document");
    return r;
  }
  Converter c(r, limits);
  try {
    r.doc = c.convert(docs.front(), "", 0);
  } catch (const std::exception& e) {
    r.problems.emplace_back("", std::string("not valid YAML: ") + e.what());
  }
  r.ok = r.problems.empty();
  return r;
}

}  // namespace

// yaml-cpp 0.7 is not safe on every input: some garbage makes it allocate without bound or
// corrupt its heap (found by the random-bytes test). So the document is read in a child process
// with a memory and time limit, and only its JSON comes back: a file that trips the reader is a
// problem reported, never a crash or a stall of the daemon.
YamlResult yaml_to_json(const std::string& text, YamlLimits limits) {
  int fds[2];
  // Without descriptors or processes to spare, the file is not read at all: running yaml-cpp
  // here instead would risk the daemon itself on exactly the faults this child guards against.
  auto cannot_start = [](int err) {
    YamlResult r;
    r.problems.emplace_back("", std::string("the YAML reader could not be started (") + std::strerror(err) +
                                    "): nothing was read; try again when lastgood has descriptors and memory to spare");
    return r;
  };
  if (::pipe2(fds, O_CLOEXEC) != 0) return cannot_start(errno);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return cannot_start(err);
  }
  if (pid == 0) {
    ::close(fds[0]);
#if !defined(__SANITIZE_ADDRESS__) && !defined(LASTGOOD_SANITIZED)
    rlimit as{kChildMemory, kChildMemory};
    ::setrlimit(RLIMIT_AS, &as);
#endif
    rlimit cpu{kChildSeconds, kChildSeconds};
    ::setrlimit(RLIMIT_CPU, &cpu);
    ::alarm(kChildSeconds * 2);
    std::vector<std::uint8_t> out;
    try {
      auto r = read_yaml(text, limits);
      json j = {{"ok", r.ok}, {"doc", std::move(r.doc)}, {"problems", r.problems}, {"lines", r.lines}};
      out = json::to_cbor(j);
    } catch (...) {
      ::_exit(3);
    }
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::write(fds[1], out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(4);
      done += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::vector<std::uint8_t> in;
  std::uint8_t buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.insert(in.end(), buf, buf + n);
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  YamlResult r;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    try {
      json j = json::from_cbor(in);
      r.ok = j.at("ok").get<bool>();
      r.doc = std::move(j.at("doc"));
      r.problems = j.at("problems").get<std::vector<std::pair<std::string, std::string>>>();
      r.lines = j.at("lines").get<std::map<std::string, int>>();
      return r;
    } catch (const std::exception&) {
    }
  }
  const std::string how = WIFSIGNALED(status) ? "it was stopped by signal " + std::to_string(WTERMSIG(status)) +
                                                    " (over " + std::to_string(kChildMemory >> 20) + " MiB or " + std::to_string(kChildSeconds) + " s)"
                                              : "it gave no answer";
  r.problems.emplace_back("", "not valid YAML: the YAML reader could not read this file (" + how + "): not a lastgood config");
  return r;
}

}  // namespace lastgood::config
