// Running independent items (examples, rows) in parallel on XLA's intra-op
// thread pool, from inside an XLA FFI handler.

#ifndef DNC_JAX_CSRC_PARALLEL_H_
#define DNC_JAX_CSRC_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace dnc {

// Calls work(i) for i in [0, count). Workers claim items from a shared
// counter; the caller works too and then waits only for items already
// claimed, so nothing ever waits on a task the pool has not started. A task
// that starts late finds the counter exhausted and touches nothing else.
// `cost_per_item` (rough operations) keeps small jobs on one core, where
// handing them around would cost more than it saves.
template <typename Work>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t count,
                 int64_t cost_per_item, const Work& work) {
  constexpr int64_t kMinCostPerTask = 1 << 15;
  int64_t threads = std::max<int64_t>(1, pool.num_threads());
  threads = std::min<int64_t>(
      {threads, count,
       std::max<int64_t>(1, count * cost_per_item / kMinCostPerTask)});
  if (threads <= 1) {
    for (int64_t i = 0; i < count; ++i) work(i);
    return;
  }
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable finished;
  };
  auto shared = std::make_shared<Shared>();
  auto drain = [shared, count](const Work* job) {
    int64_t i;
    while ((i = shared->next.fetch_add(1)) < count) {
      (*job)(i);
      if (shared->done.fetch_add(1) + 1 == count) {
        std::lock_guard<std::mutex> lock(shared->mutex);
        shared->finished.notify_all();
      }
    }
  };
  for (int64_t t = 1; t < threads; ++t)
    pool.Schedule([drain, job = &work]() { drain(job); });
  drain(&work);
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == count; });
}

}  // namespace dnc

#endif  // DNC_JAX_CSRC_PARALLEL_H_
