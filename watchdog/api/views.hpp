#pragma once
// The API's JSON views of the pipeline's state, and the HTTP answer to a vote.
#include <utility>

#include <nlohmann/json.hpp>

#include "watchdog/pipeline/pipeline.hpp"

namespace lastgood::watchdog {

// One service: releases, watcher health, escalation, verification, triggers, pending proposals.
nlohmann::json service_view(const Pipeline& p, size_t si, policy::TimePoint now);
nlohmann::json proposals_view(const Pipeline& p);
// The status code and body a vote's outcome answers with: the proposal on 200 and 202 (a
// rollback started), {"error": ...} on the refusals.
std::pair<int, nlohmann::json> vote_response(const VoteOutcome& v);
// The same for a person's request: `ok_status` when accepted (202 when it started a rollback),
// 409 with the reason (and the open proposal) when refused, 403, 404, 503.
std::pair<int, nlohmann::json> request_response(const Request& r, int ok_status);

}  // namespace lastgood::watchdog
