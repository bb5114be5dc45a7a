// The fuzz targets that drive whole server connections: one simulated world
// (tests/sim) whose every decision — client bytes, cuts, cancels, id reuse,
// worker order, timers, reloads — comes from libFuzzer's input.  A broken
// invariant aborts, so libFuzzer keeps the input; `mailauth-sim` cannot
// replay it, but running the target on the saved input does.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "src/password/schemes.h"
#include "src/util/log.h"
#include "tests/sim/sim.h"

namespace mailauth::fuzz {

inline int run_server_world(const std::uint8_t* data, std::size_t size, bool mux, bool dovecot) {
  static bool init = [] {
    sim::use_deterministic_randomness();
    password::init();
    log::init(log::Target::Stderr, log::Level::Error, "fuzz");
    return true;
  }();
  (void)init;
  sim::ByteRng rng(data, size);
  sim::Options opt;
  opt.mux = mux;
  opt.dovecot = dovecot;
  opt.sessions = 4;
  opt.max_concurrent = 2;
  const sim::Report r = sim::run_world(rng, opt);
  if (!r.ok) {
    std::fprintf(stderr, "simulated world broke an invariant: %s\n", r.failure.c_str());
    std::abort();
  }
  return 0;
}

}  // namespace mailauth::fuzz
