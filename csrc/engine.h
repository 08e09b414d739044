// The batching engine: N sequence slots in one llama.cpp context and one scheduler thread that,
// every step, decodes one batch made of all active requests -- the next token (or MTP verification
// rows) of every generating slot and a prompt chunk of newly admitted ones -- then samples each
// slot with its own sampler, drafts for every speculating slot in one pass, and rolls rejected
// draft tokens back per sequence. Requests from any thread are admitted into free slots as they
// arrive (continuous batching); the rest wait in a bounded FIFO queue.
//
// The scheduler thread never touches Python. It is started by the constructor and joined by
// close() (and the destructor).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "adaptive.h"
#include "generation.h"
#include "model.h"
#include "request.h"
#include "sampling.h"  // llama.cpp common/sampling.h

struct common_threadpools;  // common/common.h
struct common_batch;        // common/common.h

namespace llama_mtp {

class Slot;
class Speculator;

struct EngineOptions {
    uint32_t n_parallel = 1;   // sequence slots (llama.cpp: -np)
    uint32_t max_queue = 1024; // requests that may wait for a slot; beyond: QueueFullError
    // The speculator set at load: requests may ask for it, for a smaller n_max, or for none;
    // anything else is rejected. Unset: the first speculating request configures it, and a
    // request asking for another one waits until the engine is idle to reconfigure it.
    std::optional<SpeculatorOptions> speculator;
    // One throwaway decode at construction (llama.cpp's tools do it unless --no-warmup), so that
    // the first request does not pay the first graph's allocations and weight page-ins.
    bool warmup = false;
};

// Counters since the engine started (llama-server's /metrics and vLLM's spec_decode_* names).
struct EngineMetrics {
    uint32_t n_parallel = 0;
    uint32_t requests_processing = 0;  // busy slots
    uint32_t requests_deferred = 0;    // waiting in the queue
    uint64_t kv_cache_tokens = 0;      // tokens held in the target's memory, all slots
    double kv_cache_usage_ratio = 0.0;
    uint64_t prompt_tokens_total = 0;
    double prompt_seconds_total = 0.0;
    uint64_t tokens_predicted_total = 0;
    double tokens_predicted_seconds_total = 0.0;
    uint64_t n_decode_total = 0;       // batches decoded
    uint64_t n_busy_slots_total = 0;   // sum over decoded batches of the slots in them
    uint64_t requests_finished_total = 0;
    double decode_seconds_total = 0.0;  // target batches and the draft context following them
    double draft_seconds_total = 0.0;   // drafting passes
    uint64_t n_draft_passes_total = 0;
    uint64_t spec_decode_num_drafts = 0;
    uint64_t spec_decode_num_draft_tokens = 0;
    uint64_t spec_decode_num_accepted_tokens = 0;
    std::vector<uint64_t> spec_decode_num_accepted_tokens_per_pos;
};

class Engine {
public:
    // Creates the context (throws InvalidArgument / DecodeError / MTPUnavailableError ...) and
    // starts the scheduler thread.
    Engine(std::shared_ptr<Model> model, const ContextOptions& context, const EngineOptions& options);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Validates and queues a request. Throws InvalidArgument, ContextOverflowError,
    // MTPUnavailableError, QueueFullError, ClosedError -- all before any work is done.
    std::shared_ptr<Request> submit(RequestOptions options);

    // Cancels every request (they end with ClosedError) and joins the scheduler thread.
    // Idempotent; safe from any thread but the scheduler's.
    void close();
    bool closed() const;

    // Forgets every slot's cached prompt (before the next request is admitted).
    void reset_cache();

    EngineMetrics metrics() const;
    uint32_t n_parallel() const { return options_.n_parallel; }
    // Most tokens (prompt + generated) one sequence may hold.
    uint32_t n_ctx_seq() const { return n_ctx_seq_.load(); }
    uint32_t n_ctx() const { return context_.n_ctx; }

private:
    // A request waiting for a slot, with its sampler (made by the submitting thread, so that a
    // bad grammar fails there).
    struct Pending {
        std::shared_ptr<Request> request;
        common_sampler_ptr sampler;
    };

    void run();
    void step(std::vector<Pending>& admitted);
    bool wants_speculator(const SpeculatorOptions& wanted) const;
    void create_context(uint32_t n_draft_max);
    void warm_up();
    void configure_speculator(const SpeculatorOptions& wanted);
    void free_context();
    void start(Slot& slot, Pending&& pending);
    // Adaptive speculation, when a request starts: sets the drafting depth; false when the
    // request is to be served plainly (no MTP work at all).
    bool adaptive_admits_drafting();
    double plain_step_seconds() const;  // adaptive: what a step of one row costs with no MTP work
    FollowedSteps followed_steps() const;  // adaptive: what a step costs a speculating sequence
    // A request served plainly speculates again after 4 such requests, then after twice as many
    // each time the recheck finds that drafting still does not pay (at most 32): a text where it
    // never pays then loses a few per mille, not a quarter of a request in four.
    static constexpr int kAdaptiveRecheckFirst = 4;
    static constexpr int kAdaptiveRecheckMax = 32;
    // A depth within this much of the best, by the estimates, whose cost was last measured more
    // than kAdaptiveRefreshTicks steps ago, serves a request that starts alone (see the .cpp).
    static constexpr double kAdaptiveRefreshMargin = 0.05;
    static constexpr uint64_t kAdaptiveRefreshTicks = 128;
    // The engine's acceptance (deciding the depth between requests, and seeding new sequences)
    // remembers ~20 verifications per position: one request's last few drafts must not decide.
    static constexpr double kEngineAcceptanceWeight = 0.05;
    void finish(Slot& slot);
    void fail(Slot& slot, std::exception_ptr error);
    void fail_all(std::exception_ptr error);
    Slot* choose_slot(const RequestOptions& request);
    bool evict_idle(const Slot* except);

    std::shared_ptr<Model> model_;
    ModelHandle handle_;
    ContextOptions context_;
    EngineOptions options_;
    bool recurrent_ = false;

    // Owned by the scheduler thread once it runs (created by the constructor / reconfiguration).
    std::unique_ptr<common_threadpools> threadpools_;
    llama_context* ctx_ = nullptr;
    llama_context_params ctx_params_{};
    std::unique_ptr<common_batch> batch_;
    std::unique_ptr<common_batch> mirror_;  // the rows the speculator follows
    uint32_t n_rs_seq_ = 0;
    std::atomic<uint32_t> n_ctx_seq_{0};
    std::atomic<bool> abort_{false};
    std::unique_ptr<Speculator> speculator_;
    std::vector<std::unique_ptr<Slot>> slots_;
    uint64_t clock_ = 0;  // step counter: least-recently-used slot choice
    // Adaptive speculation: measured step and drafting costs, and the acceptance over all
    // sequences (the drafting depth is chosen from it between requests). Step costs are whole
    // steps (decode, sampling, verifying, rolling back) without the draft context following the
    // step, which is timed apart (follow_costs_): every generation step is timed, also while
    // requests are served with no MTP work, so what a speculating sequence's step costs
    // (FollowedSteps: the sum) follows the machine's pace even then.
    StepCosts step_costs_;
    StepCosts follow_costs_;
    DraftCosts draft_costs_;
    AcceptanceEstimate acceptance_;
    // Requests served without any MTP work since drafting last looked worth it (see start()).
    int adaptive_plain_requests_ = 0;
    int adaptive_recheck_every_ = kAdaptiveRecheckFirst;

    // Shared with callers, under mutex_.
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Pending> queue_;
    bool stop_ = false;
    bool reset_requested_ = false;
    std::optional<SpeculatorOptions> configured_;  // the speculator the engine serves (or will)
    EngineMetrics metrics_;
    std::thread thread_;
};

}  // namespace llama_mtp
