// WorkerPool: a fixed set of threads for blocking work (hash checks, SQL,
// PAM), so the event loop never blocks.
//
// submit() takes a job that runs on a worker and returns a continuation; the
// continuation is posted back to the event loop (through its eventfd) and runs
// there.  A job that throws has its `if_thrown` continuation posted instead
// (see executor.h).  The queue is bounded: when it is full submit() returns
// false and the caller answers with a temporary failure instead of letting
// memory grow.  At shutdown (shutdown() or the destructor) no new job is
// taken, but the workers still run every job already queued before they
// exit; the continuations those jobs post never run if the loop has stopped
// by then (the daemon stops the loop first).
//
// One pool serves every event loop of the daemon: submit_to() names the loop
// a continuation goes back to, and for_loop() is the Executor an
// authenticator on that loop programs against.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "src/runtime/event_loop.h"
#include "src/runtime/executor.h"

namespace mailauth {

class WorkerPool final : public Executor {
 public:

  WorkerPool(EventLoop& loop, int threads, std::size_t max_queue);
  ~WorkerPool() override;  // shutdown(): runs the queued jobs, joins the threads
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Loop thread (or any thread).  False when the queue is full or the pool is
  // shutting down; the job is then not run.
  bool submit(Job job, Continuation if_thrown) override;
  // The same, with the continuation posted to `loop` (which must outlive the
  // job).  Any thread.
  bool submit_to(EventLoop& loop, Job job, Continuation if_thrown);

  // submit() with continuations to `loop`.  The pool must outlive it.
  class ForLoop final : public Executor {
   public:
    ForLoop(WorkerPool& pool, EventLoop& loop) : pool_(pool), loop_(loop) {}
    bool submit(Job job, Continuation if_thrown) override {
      return pool_.submit_to(loop_, std::move(job), std::move(if_thrown));
    }

   private:
    WorkerPool& pool_;
    EventLoop& loop_;
  };

  std::size_t queued() const;
  std::size_t busy() const;
  int threads() const { return static_cast<int>(threads_.size()); }

  // Stop taking jobs, let queued and running ones finish, join the threads.
  void shutdown();

 private:
  void run();
  EventLoop& loop_;
  const std::size_t max_queue_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  struct Queued {
    Job job;
    Continuation if_thrown;
    EventLoop* loop;
  };
  std::deque<Queued> queue_;
  std::size_t busy_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace mailauth
