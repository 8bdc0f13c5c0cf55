#include "actions/ssh_session.hpp"

#include <libssh2.h>

#include <deque>
#include <mutex>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <openssl/evp.h>

#include "net/resolve.hpp"

namespace lastgood::actions {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

namespace {

void init_libssh2_once() {
  static std::once_flag once;
  std::call_once(once, [] { libssh2_init(0); });
}

const char* key_type_name(int type) {
  switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
    default: return "unknown";
  }
}

int known_host_key_bit(int type) {
  switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  }
}

std::string base64(const unsigned char* p, size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(static_cast<size_t>(len));
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

constexpr size_t kOutputCap = 16 * 1024;

}  // namespace

struct SshSession::Impl : std::enable_shared_from_this<SshSession::Impl> {
  asio::any_io_executor ex;
  SshOptions opts;
  tcp::socket sock;
  asio::steady_timer timer;
  LIBSSH2_SESSION* session = nullptr;
  int connections = 0;
  bool busy = false;

  Impl(asio::any_io_executor e, SshOptions o) : ex(e), opts(std::move(o)), sock(e), timer(e) { init_libssh2_once(); }
  ~Impl() { drop(); }

  std::string where() const { return opts.user + "@" + opts.host + ":" + std::to_string(opts.port); }

  std::string last_error() const {
    if (!session) return "no session";
    char* msg = nullptr;
    int len = 0;
    libssh2_session_last_error(session, &msg, &len, 0);
    return msg ? std::string(msg, static_cast<size_t>(len)) : "unknown libssh2 error";
  }

  void drop() {
    if (session) {
      libssh2_session_set_blocking(session, 0);
      libssh2_session_disconnect(session, "lastgood closing");
      libssh2_session_free(session);
      session = nullptr;
    }
    boost::system::error_code ec;
    sock.close(ec);
  }

  // Waits until the socket is ready in the direction libssh2 is blocked on; false on deadline.
  asio::awaitable<bool> wait(Clock::time_point deadline) {
    if (Clock::now() >= deadline) co_return false;
    timer.expires_at(deadline);
    std::weak_ptr<Impl> weak = shared_from_this();
    timer.async_wait([weak](boost::system::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) {
        boost::system::error_code ignored;
        self->sock.cancel(ignored);
      }
    });
    const int dir = libssh2_session_block_directions(session);
    auto w = (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND) ? tcp::socket::wait_write : tcp::socket::wait_read;
    auto [ec] = co_await sock.async_wait(w, use_tuple);
    timer.cancel();
    co_return !ec && Clock::now() < deadline;
  }

  // Retries a libssh2 call that may answer EAGAIN; LIBSSH2_ERROR_TIMEOUT at the deadline.
  template <typename F>
  asio::awaitable<long> retry(F f, Clock::time_point deadline) {
    for (;;) {
      long rc = static_cast<long>(f());
      if (rc != LIBSSH2_ERROR_EAGAIN) co_return rc;
      if (!co_await wait(deadline)) co_return LIBSSH2_ERROR_TIMEOUT;
    }
  }

  asio::awaitable<std::string> connect(Clock::time_point deadline) {
    drop();
    const std::string port = std::to_string(opts.port);
    net::Resolved resolved = co_await net::resolve(ex, opts.host, port, deadline);
    if (resolved.error) co_return std::move(*resolved.error);
    const auto& eps = resolved.endpoints;
    sock = tcp::socket(ex);
    std::weak_ptr<Impl> weak = shared_from_this();
    timer.expires_at(deadline);
    timer.async_wait([weak](boost::system::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) {
        boost::system::error_code ignored;
        self->sock.close(ignored);
      }
    });
    auto [cec, ep] = co_await asio::async_connect(sock, eps, use_tuple);
    timer.cancel();
    if (cec) co_return "connecting to " + where() + ": " + (Clock::now() >= deadline ? "timed out" : cec.message());
    ++connections;

    session = libssh2_session_init();
    if (!session) co_return "libssh2_session_init failed";
    libssh2_session_set_blocking(session, 0);
    const auto fd = sock.native_handle();
    long rc = co_await retry([&] { return libssh2_session_handshake(session, fd); }, deadline);
    if (rc) co_return "SSH handshake with " + where() + ": " + (rc == LIBSSH2_ERROR_TIMEOUT ? "timed out" : last_error());

    // The host key, before anything is sent that matters.
    size_t key_len = 0;
    int key_type = 0;
    const char* key = libssh2_session_hostkey(session, &key_len, &key_type);
    if (!key) co_return "no host key from " + where();
    std::string fp = "?";
    if (const char* h = libssh2_hostkey_hash(session, LIBSSH2_HOSTKEY_HASH_SHA256))
      fp = "SHA256:" + base64(reinterpret_cast<const unsigned char*>(h), 32);
    const std::string key_desc = std::string(key_type_name(key_type)) + " " + fp;
    LIBSSH2_KNOWNHOSTS* kh = libssh2_knownhost_init(session);
    if (!kh) co_return "libssh2_knownhost_init failed";
    int n = libssh2_knownhost_readfile(kh, opts.known_hosts.c_str(), LIBSSH2_KNOWNHOST_FILE_OPENSSH);
    if (n < 0) {
      libssh2_knownhost_free(kh);
      co_return "cannot read known_hosts " + opts.known_hosts;
    }
    struct libssh2_knownhost* entry = nullptr;
    const int check = libssh2_knownhost_checkp(kh, opts.host.c_str(), opts.port, key, key_len,
                                               LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | known_host_key_bit(key_type),
                                               &entry);
    libssh2_knownhost_free(kh);
    const std::string host_name = opts.port == 22 ? opts.host : "[" + opts.host + "]:" + std::to_string(opts.port);
    if (check == LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
      co_return "host key MISMATCH for " + host_name + ": the server presented " + key_desc + ", which is not the key in " +
                opts.known_hosts + " (nothing was run)";
    if (check == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND)
      co_return "host key of " + host_name + " (" + key_desc + ") is not in " + opts.known_hosts + " (nothing was run)";
    if (check != LIBSSH2_KNOWNHOST_CHECK_MATCH) co_return "host key check failed for " + host_name + " (nothing was run)";

    if (opts.use_agent) {
      LIBSSH2_AGENT* agent = libssh2_agent_init(session);
      if (!agent) co_return "ssh-agent: init failed";
      std::string err = "ssh-agent: no identity was accepted for " + opts.user;
      if (libssh2_agent_connect(agent) != 0 || libssh2_agent_list_identities(agent) != 0) {
        err = "ssh-agent: cannot connect (is SSH_AUTH_SOCK set?)";
      } else {
        struct libssh2_agent_publickey* id = nullptr;
        struct libssh2_agent_publickey* prev = nullptr;
        while (libssh2_agent_get_identity(agent, &id, prev) == 0) {
          long arc = co_await retry([&] { return libssh2_agent_userauth(agent, opts.user.c_str(), id); }, deadline);
          if (arc == 0) {
            err.clear();
            break;
          }
          prev = id;
        }
      }
      libssh2_agent_disconnect(agent);
      libssh2_agent_free(agent);
      if (!err.empty()) co_return err;
    } else {
      long arc = co_await retry(
          [&] {
            return libssh2_userauth_publickey_fromfile_ex(session, opts.user.c_str(), static_cast<unsigned>(opts.user.size()), nullptr,
                                                          opts.key_file.c_str(), nullptr);
          },
          deadline);
      if (arc) co_return "public key authentication as " + opts.user + " with " + opts.key_file + " failed: " +
                         (arc == LIBSSH2_ERROR_TIMEOUT ? "timed out" : last_error());
    }
    co_return "";
  }

  // One command at a time on a session: later callers wait their turn.
  std::deque<std::shared_ptr<asio::steady_timer>> waiters;
  asio::awaitable<void> lock() {
    while (busy) {
      auto t = std::make_shared<asio::steady_timer>(ex, Clock::time_point::max());
      waiters.push_back(t);
      co_await t->async_wait(use_tuple);
    }
    busy = true;
  }
  void unlock() {
    busy = false;
    if (!waiters.empty()) {
      waiters.front()->cancel();
      waiters.pop_front();
    }
  }

  asio::awaitable<ExecResult> run(std::string command) {
    auto self = shared_from_this();  // keeps the session alive while the coroutine runs
    co_await lock();
    ExecResult r = co_await run_locked(std::move(command));
    unlock();
    co_return r;
  }

  asio::awaitable<ExecResult> run_locked(std::string command) {
    const auto deadline = Clock::now() + opts.timeout;
    ExecResult r;
    if (!session) {
      std::string err = co_await connect(deadline);
      if (!err.empty()) {
        drop();
        r.error = err;
        co_return r;
      }
    }
    LIBSSH2_CHANNEL* ch = nullptr;
    for (;;) {
      ch = libssh2_channel_open_session(session);
      if (ch || libssh2_session_last_errno(session) != LIBSSH2_ERROR_EAGAIN) break;
      if (!co_await wait(deadline)) break;
    }
    if (!ch) {
      r.error = "opening a channel to " + where() + ": " + last_error();
      drop();  // a dead kept session: reconnect next time
      co_return r;
    }
    long rc = co_await retry([&] { return libssh2_channel_exec(ch, command.c_str()); }, deadline);
    if (rc) {
      r.error = "exec on " + where() + ": " + (rc == LIBSSH2_ERROR_TIMEOUT ? "timed out" : last_error());
      libssh2_channel_free(ch);
      drop();
      co_return r;
    }
    char buf[8192];
    bool timed_out = false;
    for (;;) {
      ssize_t a = libssh2_channel_read(ch, buf, sizeof buf);
      if (a > 0 && r.out.size() < kOutputCap) r.out.append(buf, static_cast<size_t>(a));
      ssize_t b = libssh2_channel_read_stderr(ch, buf, sizeof buf);
      if (b > 0 && r.err.size() < kOutputCap) r.err.append(buf, static_cast<size_t>(b));
      if (a > 0 || b > 0) continue;
      if (libssh2_channel_eof(ch)) break;
      if ((a < 0 && a != LIBSSH2_ERROR_EAGAIN) || (b < 0 && b != LIBSSH2_ERROR_EAGAIN)) {
        r.error = "reading from " + where() + ": " + last_error();
        break;
      }
      if (!co_await wait(deadline)) {
        timed_out = true;
        break;
      }
    }
    if (timed_out) {
      r.error = "command on " + where() + " timed out after " + std::to_string(opts.timeout.count()) + "ms";
      libssh2_channel_free(ch);
      drop();
      co_return r;
    }
    co_await retry([&] { return libssh2_channel_close(ch); }, deadline);
    co_await retry([&] { return libssh2_channel_wait_closed(ch); }, deadline);
    r.exit_status = libssh2_channel_get_exit_status(ch);
    co_await retry([&] { return libssh2_channel_free(ch); }, deadline);
    if (!r.error.empty()) drop();
    co_return r;
  }
};

SshSession::SshSession(asio::any_io_executor ex, SshOptions opts) : impl_(std::make_shared<Impl>(std::move(ex), std::move(opts))) {}
SshSession::~SshSession() = default;

asio::awaitable<ExecResult> SshSession::exec(std::string command) { return impl_->run(std::move(command)); }
int SshSession::connections_made() const { return impl_->connections; }

}  // namespace lastgood::actions
