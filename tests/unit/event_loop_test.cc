#include "src/runtime/event_loop.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <stdexcept>
#include <thread>

#include "src/runtime/worker_pool.h"

namespace mailauth {
namespace {

TEST(EventLoop, TimersFireInOrderAndCancelledOnesDoNot) {
  EpollLoop loop;
  std::vector<int> fired;
  loop.add_timer(std::chrono::milliseconds(2), [&] { fired.push_back(2); });
  loop.add_timer(std::chrono::milliseconds(0), [&] { fired.push_back(0); });
  auto id = loop.add_timer(std::chrono::milliseconds(1), [&] { fired.push_back(1); });
  loop.cancel_timer(id);
  loop.add_timer(std::chrono::milliseconds(3), [&] { loop.stop(); });
  loop.run();
  EXPECT_EQ(fired, (std::vector<int>{0, 2}));
  EXPECT_EQ(loop.timer_count(), 0u);
}

TEST(EventLoop, DispatchesReadableDescriptorsAndSurvivesRemovalInCallback) {
  EpollLoop loop;
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::string got;
  loop.add(a.get(), EPOLLIN, [&](uint32_t) {
    char buf[16];
    ssize_t n = ::read(a.get(), buf, sizeof buf);
    got.append(buf, static_cast<std::size_t>(n));
    loop.remove(a.get());
    loop.stop();
  });
  ASSERT_EQ(::write(b.get(), "hi", 2), 2);
  loop.run();
  EXPECT_EQ(got, "hi");
}

TEST(WorkerPool, JobsRunOnWorkersAndContinuationsOnTheLoop) {
  EpollLoop loop;
  WorkerPool pool(loop, 2, 100);
  const auto loop_thread = std::this_thread::get_id();
  std::atomic<int> on_workers{0};
  int done = 0;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(pool.submit([&]() -> WorkerPool::Continuation {
      if (std::this_thread::get_id() != loop_thread) ++on_workers;
      return [&] {
        EXPECT_EQ(std::this_thread::get_id(), loop_thread);
        if (++done == 20) loop.stop();
      };
    }, nullptr));
  }
  loop.run();
  EXPECT_EQ(done, 20);
  EXPECT_EQ(on_workers.load(), 20);
}

TEST(WorkerPool, AJobThatThrowsStillAnswersThroughItsFallback) {
  EpollLoop loop;
  WorkerPool pool(loop, 1, 10);
  int answered = 0;
  ASSERT_TRUE(pool.submit([]() -> WorkerPool::Continuation { throw std::runtime_error("boom"); },
                          [&] { answered += 1; }));
  ASSERT_TRUE(pool.submit([]() -> WorkerPool::Continuation { throw 42; },
                          [&] { answered += 10; }));
  ASSERT_TRUE(pool.submit([&]() -> WorkerPool::Continuation {
                            return [&] {
                              answered += 100;
                              loop.stop();
                            };
                          },
                          [&] { answered += 1000; }));
  loop.run();
  EXPECT_EQ(answered, 111) << "each job answers exactly once: its continuation or its fallback";
}

TEST(WorkerPool, FullQueueRefusesInsteadOfGrowing) {
  EpollLoop loop;
  WorkerPool pool(loop, 1, 2);
  std::atomic<bool> release{false};
  std::atomic<bool> started{false};
  auto blocker = [&]() -> WorkerPool::Continuation {
    started = true;
    while (!release) std::this_thread::yield();
    return nullptr;
  };
  ASSERT_TRUE(pool.submit(blocker, nullptr));
  while (!started) std::this_thread::yield();
  EXPECT_TRUE(pool.submit([] { return WorkerPool::Continuation(); }, nullptr));
  EXPECT_TRUE(pool.submit([] { return WorkerPool::Continuation(); }, nullptr));
  EXPECT_FALSE(pool.submit([] { return WorkerPool::Continuation(); }, nullptr));
  release = true;
  pool.shutdown();
  EXPECT_FALSE(pool.submit([] { return WorkerPool::Continuation(); }, nullptr));
}

}  // namespace
}  // namespace mailauth
