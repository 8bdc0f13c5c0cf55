// The floor of lastgood's probing pattern: the least a client can spend to send N keep-alive
// HTTP requests a second, each target once per interval, in lastgood's slots (runs planned on a
// grid, bench/compare.py's "floor" rows). It makes the same system calls a kept-alive lastgood
// probe makes (one send, one recv, a share of an epoll_wait and of a timer wake-up) and nothing
// else: no policy, no metrics, no parsing beyond finding the end of the response.
//
// wrk measures a client that never sleeps, its connections always busy; a watchdog's connections
// are idle between runs, so each request pays the kernel's costs of an idle flow (waking the
// server, a delayed ACK sent on its own, cold caches after the loop slept). Dividing lastgood's
// CPU per probe by this one's says how much is lastgood's own work; dividing this one's by wrk's
// says how much the pattern costs.
//
//   pattern_floor PORT[,PORT...] N SECONDS [WARMUP] [INTERVAL_MS] [GRID_MS]
//
// Prints one JSON line: requests in the window, ok responses, CPU seconds (getrusage) and CPU µs
// per request.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  std::string request;
  std::string got;
  bool waiting = false;
};

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// A response is complete when its head has ended and Content-Length bytes of body followed.
bool complete(std::string_view s, bool* ok) {
  const auto end = s.find("\r\n\r\n");
  if (end == std::string_view::npos) return false;
  size_t len = 0;
  const auto cl = s.find("Content-Length: ");
  if (cl != std::string_view::npos && cl < end) len = std::strtoul(s.data() + cl + 16, nullptr, 10);
  if (s.size() < end + 4 + len) return false;
  *ok = s.substr(0, 12) == "HTTP/1.1 200";
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: pattern_floor PORT[,PORT...] N SECONDS [WARMUP] [INTERVAL_MS] [GRID_MS]\n");
    return 2;
  }
  std::vector<int> ports;
  for (const char* p = argv[1]; *p;) {
    char* e = nullptr;
    ports.push_back(static_cast<int>(std::strtol(p, &e, 10)));
    p = *e == ',' ? e + 1 : e;
  }
  const size_t n = std::strtoul(argv[2], nullptr, 10);
  const double seconds = std::atof(argv[3]);
  const double warmup = argc > 4 ? std::atof(argv[4]) : 3;
  const auto interval = std::chrono::milliseconds(argc > 5 ? std::atoi(argv[5]) : 1000);
  const auto grid = std::chrono::milliseconds(argc > 6 ? std::atoi(argv[6]) : 100);
  const size_t slots = static_cast<size_t>(std::max<long>(1, interval / grid));

  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> conns(n);
  for (size_t i = 0; i < n; ++i) {
    conns[i].fd = connect_to(ports[i % ports.size()]);
    if (conns[i].fd < 0) {
      std::fprintf(stderr, "connect %zu: %s\n", i, std::strerror(errno));
      return 1;
    }
    conns[i].request = "GET /fl/" + std::to_string(i) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: lastgood-floor\r\n\r\n";
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
  }
  // Target i runs in slot i % slots of every interval, as lastgood spreads probes over its grid.
  std::vector<std::vector<size_t>> by_slot(slots);
  for (size_t i = 0; i < n; ++i) by_slot[i % slots].push_back(i);

  const auto t0 = Clock::now();
  const auto measure_from = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup));
  const auto end = measure_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto next_slot = t0;
  size_t slot = 0;
  bool measuring = false;
  double cpu0 = 0;
  long sent = 0, ok = 0, bad = 0, late = 0;
  std::vector<epoll_event> evs(1024);
  char buf[4096];
  for (;;) {
    auto now = Clock::now();
    if (!measuring && now >= measure_from) {
      measuring = true;
      cpu0 = cpu_seconds();
      sent = ok = bad = late = 0;
    }
    if (now >= end) break;
    while (now >= next_slot) {
      for (size_t i : by_slot[slot]) {
        Conn& c = conns[i];
        if (c.waiting) {  // the previous request has not been answered: skip this run
          ++late;
          continue;
        }
        c.got.clear();
        if (send(c.fd, c.request.data(), c.request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(c.request.size())) {
          ++bad;
          continue;
        }
        c.waiting = true;
        ++sent;
      }
      slot = (slot + 1) % slots;
      next_slot += grid;
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_slot - now + std::chrono::microseconds(999)).count();
    const int k = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), static_cast<int>(std::max<long>(0, wait)));
    for (int e = 0; e < k; ++e) {
      Conn& c = conns[evs[e].data.u64];
      // One recv per response when it arrives whole (as lastgood's read does); more only while the
      // response is incomplete (edge-triggered: read until EAGAIN then).
      for (;;) {
        const ssize_t r = recv(c.fd, buf, sizeof buf, 0);
        if (r > 0) {
          c.got.append(buf, static_cast<size_t>(r));
          bool good = false;
          if (c.waiting && complete(c.got, &good)) {
            c.waiting = false;
            (good ? ok : bad) += 1;
            break;
          }
          continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          std::fprintf(stderr, "connection %llu closed\n", static_cast<unsigned long long>(evs[e].data.u64));
          return 1;
        }
        if (errno == EAGAIN) break;
      }
    }
  }
  const double cpu = cpu_seconds() - cpu0;
  std::printf("{\"n\": %zu, \"seconds\": %.3f, \"requests\": %ld, \"ok\": %ld, \"bad\": %ld, \"skipped\": %ld, \"cpu_s\": %.4f, \"cpu_us_per_request\": %.3f}\n",
              n, seconds, sent, ok, bad, late, cpu, sent ? 1e6 * cpu / static_cast<double>(sent) : 0.0);
  return 0;
}
