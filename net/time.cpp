#include "net/time.hpp"

#include <cctype>
#include <ctime>
#include <iomanip>
#include <sstream>

namespace lastgood::net {

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(const std::string& s) {
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail() || s.size() < 19) return std::nullopt;
  // system_clock counts nanoseconds in 64 bits (years 1678 to 2262): a time far outside that,
  // which a registry may send, would overflow. Found by fuzz/fuzz_url ("20" parsed as year 20).
  if (tm.tm_year < 1970 - 1900 || tm.tm_year > 2200 - 1900) return std::nullopt;
  auto t = std::chrono::system_clock::from_time_t(timegm(&tm));
  size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    size_t end = pos + 1;
    while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
    std::string frac = s.substr(pos + 1, end - pos - 1);
    frac.resize(3, '0');
    t += std::chrono::milliseconds(std::stoi(frac.substr(0, 3)));
    pos = end;
  }
  if (pos < s.size() && (s[pos] == '+' || s[pos] == '-') && s.size() >= pos + 6) {
    // From the network: digits are checked, never handed to std::stoi (which throws).
    auto two = [&](size_t at) {
      const auto d = [&](size_t i) { return std::isdigit(static_cast<unsigned char>(s[i])) != 0; };
      return d(at) && d(at + 1) ? (s[at] - '0') * 10 + (s[at + 1] - '0') : -1;
    };
    const int sign = s[pos] == '+' ? 1 : -1;
    const int h = two(pos + 1), m = two(pos + 4);
    if (h < 0 || m < 0 || s[pos + 3] != ':') return std::nullopt;
    t -= sign * (std::chrono::hours(h) + std::chrono::minutes(m));
  }
  return t;
}

}  // namespace lastgood::net
