#include "net/tls.hpp"

#include <sys/stat.h>

#include <map>
#include <mutex>

#include <boost/asio/ssl.hpp>

namespace lastgood::net {

namespace ssl = boost::asio::ssl;

TlsCounts g_tls_handshakes;

std::shared_ptr<ssl::context> make_tls_context(const TlsOptions& opts) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  ctx->set_verify_mode(ssl::verify_peer);
  // An idle kept-alive connection gives its read and write buffers back (about 34 KiB each):
  // with a thousand HTTPS probes that is most of their memory.
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  // Sessions are kept by each connection for its own origin (http_client.cpp), not in a shared
  // cache: a reconnect resumes instead of a full handshake.
  SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  if (opts.ca_file) ctx->load_verify_file(*opts.ca_file);
  else ctx->set_default_verify_paths();
  if (opts.insecure_skip_verify) {
    // Explicit opt-out from config (logged at start by the caller): accept any chain and name.
    ctx->set_verify_callback([](bool, ssl::verify_context&) { return true; });
  }
  return ctx;
}

std::shared_ptr<ssl::context> shared_tls_context(const TlsOptions& opts) {
  if (!opts.ca_file && !opts.insecure_skip_verify) return default_tls_context();
  // Keyed by the CA file as it is now on disk: a changed bundle (then a reload) gets a context of
  // its own, while probes made before keep theirs.
  std::string key = opts.insecure_skip_verify ? "insecure\n" : "verify\n";
  if (opts.ca_file) {
    key += *opts.ca_file;
    struct stat st {};
    if (::stat(opts.ca_file->c_str(), &st) == 0)
      key += "\n" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
             std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  }
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<ssl::context>> made;
  std::lock_guard lock(mu);
  if (auto ctx = made[key].lock()) return ctx;
  auto ctx = make_tls_context(opts);  // throws on a bad CA file, as before
  for (auto it = made.begin(); it != made.end();) it = it->second.expired() ? made.erase(it) : std::next(it);
  made[key] = ctx;
  return ctx;
}

std::shared_ptr<ssl::context> default_tls_context() {
  static const std::shared_ptr<ssl::context> ctx = make_tls_context({});
  return ctx;
}

}  // namespace lastgood::net
