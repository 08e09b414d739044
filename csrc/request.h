// A generation request as the engine sees it: what the caller asked for (RequestOptions) and the
// shared state through which the engine's thread hands chunks, the result or an error back to the
// caller's thread (Request). Nothing here touches Python: the binding layer waits on a Request
// with the GIL released.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "generation.h"

namespace llama_mtp {

// A flag another thread (or a closed stream) sets to stop a request within one engine step.
class CancelToken {
public:
    void cancel() { cancelled_.store(true); }
    bool cancelled() const { return cancelled_.load(); }

private:
    std::atomic<bool> cancelled_{false};
};

// What one call asks of the engine.
struct RequestOptions {
    std::vector<llama_token> prompt;
    SamplingOptions sampling;
    SpeculatorOptions speculator;  // types empty or "none": plain decoding for this request
    bool cache_prompt = true;      // reuse a slot's cached prefix (and keep this prompt for the next)
    bool stream = false;           // hand out a Chunk after every step
    std::shared_ptr<CancelToken> cancel;
};

// One step's new output of a streamed request: whole UTF-8 characters only.
struct Chunk {
    std::string text;
    std::vector<llama_token> tokens;
    std::vector<TokenLogprob> logprobs;  // one per token when the request asked for logprobs
};

// The caller's handle on a submitted request. The engine thread calls push / finish / fail; any
// other thread waits with next / wait. Thread-safe.
class Request {
public:
    using Clock = std::chrono::steady_clock;

    explicit Request(RequestOptions options) : options_(std::move(options)) {
        if (!options_.cancel) options_.cancel = std::make_shared<CancelToken>();
    }

    const RequestOptions& options() const { return options_; }
    void cancel() { options_.cancel->cancel(); }
    bool cancelled() const { return options_.cancel->cancelled(); }

    // --- engine side ---
    void push(Chunk chunk);
    void finish(GenerationResult result);
    void fail(std::exception_ptr error);

    // --- caller side ---
    enum class Wait { kReady, kTimeout };
    // Waits until a chunk is available or the request has ended (then `out` is left empty and
    // `ended` is set), or until `deadline`.
    Wait next(Chunk& out, bool& ended, Clock::time_point deadline);
    // Waits until the request has ended.
    Wait wait(Clock::time_point deadline);
    bool done() const;
    size_t pending() const;
    // The final result; rethrows the engine's error. Only after done().
    GenerationResult take_result();

private:
    RequestOptions options_;
    mutable std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<Chunk> chunks_;
    bool done_ = false;
    GenerationResult result_;
    std::exception_ptr error_;
};

}  // namespace llama_mtp
