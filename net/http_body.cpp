#include "net/http_body.hpp"

#include <charconv>
#include <string_view>

namespace lastgood::net {

BodyReader::Status BodyReader::feed(std::string& in, std::size_t& pos, bool eof, std::string& body) {
  if (pos > in.size()) return malformed("body offset past the bytes read");  // a caller's bug, never UB
  switch (framing_) {
    case Framing::length: {
      if (length_ > max_body_) return Status::too_big;  // refused at the header
      if (in.size() - pos < length_) return Status::more;
      body.append(in, pos, static_cast<std::size_t>(length_));
      pos += static_cast<std::size_t>(length_);
      return Status::done;
    }
    case Framing::close: {
      if (in.size() - pos > max_body_) return Status::too_big;
      if (!eof) return Status::more;
      body.append(in, pos, std::string::npos);
      pos = in.size();
      return Status::done;
    }
    case Framing::chunked: break;
  }
  // The next CRLF-ended line from pos, or nothing yet.
  auto line = [&](std::string_view& out) -> Status {
    const auto e = in.find("\r\n", pos);
    if (e == std::string::npos) return in.size() - pos > kLineLimit ? malformed("chunk line too long") : Status::more;
    if (e - pos > kLineLimit) return malformed("chunk line too long");
    out = std::string_view(in).substr(pos, e - pos);
    pos = e + 2;
    return Status::done;
  };
  for (;;) {
    switch (state_) {
      case State::size_line: {
        std::string_view l;
        if (auto st = line(l); st != Status::done) return st;
        l = l.substr(0, l.find(';'));  // chunk extensions are ignored
        while (!l.empty() && (l.back() == ' ' || l.back() == '\t')) l.remove_suffix(1);
        std::uint64_t size = 0;
        const auto [p, ec] = std::from_chars(l.data(), l.data() + l.size(), size, 16);
        if (l.empty() || ec != std::errc() || p != l.data() + l.size()) return malformed("bad chunk size");
        if (size == 0) {
          state_ = State::trailer;
          break;
        }
        if (size > max_body_ || body.size() + size > max_body_) return Status::too_big;
        chunk_ = size;
        state_ = State::data;
        break;
      }
      case State::data: {
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_, in.size() - pos));
        body.append(in, pos, take);
        pos += take;
        chunk_ -= take;
        in.erase(0, pos);  // keep the buffer small on long bodies
        pos = 0;
        if (chunk_ > 0) return Status::more;
        state_ = State::data_end;
        break;
      }
      case State::data_end: {
        if (in.size() - pos < 2) return Status::more;
        if (in.compare(pos, 2, "\r\n") != 0) return malformed("bad chunk ending");
        pos += 2;
        state_ = State::size_line;
        break;
      }
      case State::trailer: {  // trailer fields, up to the empty line
        std::string_view l;
        if (auto st = line(l); st != Status::done) return st;
        if (l.empty()) {
          state_ = State::done;
          return Status::done;
        }
        break;
      }
      case State::done: return Status::done;
    }
  }
}

}  // namespace lastgood::net
