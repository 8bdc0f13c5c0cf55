// A probe or deployment block: config/ reads the keys every kind has, then hands the block to the
// parser of its `kind`, chosen by name from the table it was given. There is no fallback: an
// unknown kind is an error naming the known ones.
#include "config/reader.hpp"

namespace lastgood::config::detail {

namespace {

std::vector<std::string> names_of(const std::vector<KindParser>& table) {
  std::vector<std::string> v;
  for (const auto& k : table) v.push_back(k.name);
  return v;
}

// Reads `kind` from the block and runs its parser.
std::shared_ptr<const KindSpec> parse_kind(Obj& o, const std::vector<KindParser>& table, std::string& kind_out) {
  auto kind = o.one_of("kind", names_of(table), true);
  if (!kind) {
    o.skip_rest();  // its keys are that kind's: not each an error of its own
    return nullptr;
  }
  kind_out = *kind;
  for (const auto& k : table)
    if (*kind == k.name) return k.parse(o);
  return nullptr;
}

}  // namespace

void parse_probe(Ctx& c, const json& j, const std::string& ptr, Probe& p) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  if (auto n = o.str("name", true)) {
    check_name(c, o.at("name"), *n, "probe name");
    p.name = *n;
  }
  if (auto d = o.duration("interval", false, Duration{100})) p.interval = *d;
  if (auto d = o.duration("timeout", false, Duration{10})) p.timeout = *d;
  if (auto r = o.boolean("reference")) p.reference = *r;
  if (p.timeout > p.interval) {
    c.error(o.at("timeout"), "expected a timeout no longer than the interval (" + format_duration(p.interval) + "), found " +
                                 format_duration(p.timeout));
  }
  p.spec = parse_kind(o, c.kinds->probes, p.kind);
}

void parse_deployment(Ctx& c, const json& j, const std::string& ptr, Deployment& d) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  if (auto i = o.duration("observe_interval", false, Duration{100})) d.observe_interval = *i;
  if (auto m = o.strings("migration_releases")) d.migration_releases = *m;
  d.spec = parse_kind(o, c.kinds->deployments, d.kind);
}

}  // namespace lastgood::config::detail
