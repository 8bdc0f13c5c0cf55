#pragma once
// What config/ knows of a probe or deployment kind: its name and the parser of its own keys into
// its typed spec. The kinds themselves live one per file in probes/ and actions/, each with its
// parser and its factory in one row; the composition root hands config/ their table
// (watchdog/kinds.cpp), so config/ accepts exactly the kinds that have a factory.
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

namespace lastgood::config {

namespace detail {
class Obj;
}

// A kind's typed keys: made once at load by the kind's parser, read by the kind's factory.
struct KindSpec {
  virtual ~KindSpec() = default;
};

// A kind as config/ sees it. `parse` reads the kind's own keys from the block (the common ones,
// such as "name", "interval" or "observe_interval", are read by config/), reports problems on the
// block's context and returns the typed spec; the spec is used only when there were none.
struct KindParser {
  const char* name;
  std::shared_ptr<const KindSpec> (*parse)(detail::Obj& block);
};

struct Kinds {
  std::vector<KindParser> probes;
  std::vector<KindParser> deployments;
};

// The typed spec a kind's factory is handed. Only its own parser made it, so another type is
// lastgood's bug, reported as such (never a crash on a bad cast).
template <typename T>
const T& spec_as(const std::shared_ptr<const KindSpec>& spec) {
  const auto* typed = dynamic_cast<const T*>(spec.get());
  if (!typed) throw std::logic_error(std::string("kind spec is not a ") + typeid(T).name());
  return *typed;
}

}  // namespace lastgood::config
