// The "ha" block: etcd endpoints, this replica's place in the cluster, and the lease timings
// (ha.md). Checked like the rest; the timings are checked against each other, because a renew
// deadline that is not inside the lease would let two owners act at once.
#include "config/reader.hpp"

#include "net/url.hpp"

namespace lastgood::config::detail {

void parse_ha(Ctx& c, const json& j, const std::string& ptr, Ha& ha) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  if (auto eps = o.strings("etcd", true, true)) {
    for (size_t i = 0; i < eps->size(); ++i) {
      const auto u = net::parse_url((*eps)[i]);
      if (!u || u->target != "/") {
        c.error(o.at("etcd") + "/" + std::to_string(i), "expected an etcd client URL like \"http://10.0.0.1:2379\", found \"" + (*eps)[i] + "\"");
        continue;
      }
      ha.etcd.push_back((*eps)[i]);
    }
  }
  if (auto s = o.str("cluster", true)) {
    check_name(c, o.at("cluster"), *s, "cluster name");
    if (s->find('/') != std::string::npos) c.error(o.at("cluster"), "expected a cluster name without '/', found \"" + *s + "\"");
    ha.cluster = *s;
  }
  if (auto s = o.str("replica", true)) {
    check_name(c, o.at("replica"), *s, "replica id");
    if (s->find('/') != std::string::npos) c.error(o.at("replica"), "expected a replica id without '/', found \"" + *s + "\"");
    ha.replica = *s;
  }
  if (auto n = o.integer("shards", 1, 1024)) ha.shards = static_cast<int>(*n);
  const bool lease_given = o.has("lease"), renew_given = o.has("renew_deadline");
  if (auto d = o.duration("lease", false, Duration{2'000})) ha.lease = *d;
  if (auto d = o.duration("renew_deadline", false, Duration{1'000})) ha.renew_deadline = *d;
  if (auto d = o.duration("retry", false, Duration{100})) ha.retry = *d;
  if (auto d = o.duration("retention", false, Duration{1'000})) ha.retention = *d;
  if (ha.lease.count() % 1000 != 0) c.error(o.at("lease"), "expected whole seconds (etcd leases are in seconds), found " + format_duration(ha.lease));
  // The owner must notice a lost lease before etcd hands the service to another replica.
  if (ha.renew_deadline >= ha.lease)
    c.error(o.at(renew_given || !lease_given ? "renew_deadline" : "lease"),
            "expected renew_deadline (" + format_duration(ha.renew_deadline) + ") shorter than lease (" + format_duration(ha.lease) + ")");
  if (ha.retry >= ha.lease) c.error(o.at("retry"), "expected retry (" + format_duration(ha.retry) + ") shorter than lease (" + format_duration(ha.lease) + ")");
  if (const json* t = o.get("tls")) {
    Obj to(c, *t, o.at("tls"));
    if (to.ok()) {
      ha.ca_file = to.abs_path("ca_file");
      ha.cert_file = to.abs_path("cert_file");
      ha.key_file = to.abs_path("key_file");
      if (ha.cert_file.has_value() != ha.key_file.has_value())
        c.error(to.ptr(), "expected both cert_file and key_file (a client certificate), or neither");
    }
  }
  if (const json* a = o.get("auth")) {
    Obj ao(c, *a, o.at("auth"));
    if (ao.ok()) {
      ha.user = ao.str("user", true);
      ha.password = ao.secret("password", true);
    }
  }
  bool tls = false, clear_off_host = false;
  for (const auto& e : ha.etcd) {
    const auto u = net::parse_url(e);
    tls = tls || u->tls();
    clear_off_host = clear_off_host || (!u->tls() && u->host != "127.0.0.1" && u->host != "::1" && u->host != "localhost");
  }
  if ((ha.ca_file || ha.cert_file) && !tls) c.error(o.at("tls"), "TLS options need https:// etcd endpoints");
  // A password over plain HTTP beyond this host can be read on the wire.
  if (ha.password && clear_off_host) c.error(o.at("auth"), "an etcd password would cross the network in clear: use https:// endpoints");
}

}  // namespace lastgood::config::detail
