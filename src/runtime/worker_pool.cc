#include "src/runtime/worker_pool.h"

#include <exception>
#include <string>

#include "src/util/log.h"

namespace mailauth {

WorkerPool::WorkerPool(EventLoop& loop, int threads, std::size_t max_queue)
    : loop_(loop), max_queue_(max_queue) {
  threads_.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkerPool::~WorkerPool() { shutdown(); }

bool WorkerPool::submit(Job job, Continuation if_thrown) {
  return submit_to(loop_, std::move(job), std::move(if_thrown));
}

bool WorkerPool::submit_to(EventLoop& loop, Job job, Continuation if_thrown) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= max_queue_) return false;
    queue_.push_back(Queued{std::move(job), std::move(if_thrown), &loop});
  }
  cv_.notify_one();
  return true;
}

std::size_t WorkerPool::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

std::size_t WorkerPool::busy() const {
  std::lock_guard lock(mutex_);
  return busy_;
}

void WorkerPool::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void WorkerPool::run() {
  for (;;) {
    Job job;
    Continuation if_thrown;
    EventLoop* loop = nullptr;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      job = std::move(queue_.front().job);
      if_thrown = std::move(queue_.front().if_thrown);
      loop = queue_.front().loop;
      queue_.pop_front();
      ++busy_;
    }
    Continuation done;
    try {
      done = job();
    } catch (const std::exception& e) {
      // Jobs report failures through their continuation; an exception here is
      // a bug, but it must neither take the daemon down nor leave the
      // request unanswered.
      log::error(std::string("worker job failed: ") + e.what());
      done = std::move(if_thrown);
    } catch (...) {
      log::error("worker job failed with a non-standard exception");
      done = std::move(if_thrown);
    }
    {
      std::lock_guard lock(mutex_);
      --busy_;
    }
    if (done) loop->post(std::move(done));
  }
}

}  // namespace mailauth
