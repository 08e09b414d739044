#include "request.h"

namespace llama_mtp {

void Request::push(Chunk chunk) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        chunks_.push_back(std::move(chunk));
    }
    ready_.notify_all();
}

void Request::finish(GenerationResult result) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (done_) return;
        result_ = std::move(result);
        done_ = true;
    }
    ready_.notify_all();
}

void Request::fail(std::exception_ptr error) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (done_) return;
        error_ = std::move(error);
        done_ = true;
    }
    ready_.notify_all();
}

Request::Wait Request::next(Chunk& out, bool& ended, Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!ready_.wait_until(lock, deadline, [&] { return !chunks_.empty() || done_; })) return Wait::kTimeout;
    ended = false;
    if (!chunks_.empty()) {
        out = std::move(chunks_.front());
        chunks_.pop_front();
    } else {
        ended = true;
    }
    return Wait::kReady;
}

Request::Wait Request::wait(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mutex_);
    return ready_.wait_until(lock, deadline, [&] { return done_; }) ? Wait::kReady : Wait::kTimeout;
}

bool Request::done() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
}

size_t Request::pending() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return chunks_.size();
}

GenerationResult Request::take_result() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    return result_;
}

}  // namespace llama_mtp
