// The decoder's worker threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lotc::detail {

// Helper threads started once per decode (a thread start costs tens of microseconds; a decode
// runs two parallel loops). run(n, body) calls body(i, worker) for every i
// in [0, n), worker in [0, size()) naming the thread, so callers can keep per-thread scratch.
// Work items never share outputs, so the result is the same for every thread count. The first
// exception is rethrown after the loop.
class WorkerPool {
public:
    explicit WorkerPool(int threads) {
        for (int w = 1; w < threads; ++w) helpers_.emplace_back([this, w] { serve(w); });
    }
    ~WorkerPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (auto& t : helpers_) t.join();
    }
    int size() const { return int(helpers_.size()) + 1; }

    template <class F>
    void run(int n, F&& body) {
        if (helpers_.empty() || n <= 1) {
            for (int i = 0; i < n; ++i) body(i, 0);
            return;
        }
        auto call = [](void* f, int i, int worker) { (*static_cast<std::remove_reference_t<F>*>(f))(i, worker); };
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = {call, static_cast<void*>(&body), n};
            next_ = 0;
            error_ = nullptr;
            busy_ = int(helpers_.size());
            ++generation_;
        }
        wake_.notify_all();
        take_items(0);
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return busy_ == 0; });
        if (error_) std::rethrow_exception(error_);
    }

private:
    struct Job {
        void (*call)(void*, int, int) = nullptr;
        void* body = nullptr;
        int n = 0;
    };

    void take_items(int worker) {
        try {
            for (int i; (i = next_++) < job_.n;) job_.call(job_.body, i, worker);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
            next_ = job_.n;
        }
    }

    void serve(int worker) {
        for (int seen = 0;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
            }
            take_items(worker);
            std::lock_guard<std::mutex> lock(mutex_);
            if (--busy_ == 0) done_.notify_one();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_, done_;
    Job job_;
    std::atomic<int> next_{0};
    int busy_ = 0, generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
    std::vector<std::thread> helpers_;
};

}  // namespace lotc::detail
