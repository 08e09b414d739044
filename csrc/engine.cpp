#include "engine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "common.h"
#include "backend.h"
#include "context_params.h"
#include "errors.h"
#include "log_bridge.h"
#include "sampling_options.h"
#include "slot.h"
#include "speculator.h"

namespace llama_mtp {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

Engine::Engine(std::shared_ptr<Model> model, const ContextOptions& context, const EngineOptions& options)
    : model_(std::move(model)), handle_(model_->handle()), context_(context), options_(options) {
    if (options_.n_parallel < 1 || options_.n_parallel > 256) throw InvalidArgument("n_parallel must be in [1, 256]");
    if (options_.max_queue < 1) throw InvalidArgument("max_queue must be >= 1");
    llama_model* m = handle_.get();
    recurrent_ = llama_model_is_recurrent(m) || llama_model_is_hybrid(m);
    metrics_.n_parallel = options_.n_parallel;
    uint32_t n_draft = 0;
    if (options_.speculator && options_.speculator->enabled()) {
        validate_speculator(*options_.speculator);
        n_draft = static_cast<uint32_t>(options_.speculator->n_max);
    }
    create_context(n_draft);
    if (options_.speculator && options_.speculator->enabled()) {
        try {
            configure_speculator(*options_.speculator);
        } catch (...) {
            free_context();
            throw;
        }
    }
    if (options_.warmup) {
        try {
            warm_up();
        } catch (...) {
            free_context();
            throw;
        }
    }
    thread_ = std::thread([this] { run(); });
}

Engine::~Engine() {
    close();
    free_context();
}

void Engine::close() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    abort_.store(true);  // a long prompt batch in flight stops at its next graph node
    wake_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool Engine::closed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stop_;
}

void Engine::reset_cache() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        reset_requested_ = true;
    }
    wake_.notify_all();
}

EngineMetrics Engine::metrics() const {
    std::lock_guard<std::mutex> lock(mutex_);
    EngineMetrics m = metrics_;
    m.requests_deferred = static_cast<uint32_t>(queue_.size());
    return m;
}

// --- context and speculator -------------------------------------------------------------------

void Engine::free_context() {
    const bool had_context = ctx_ != nullptr;
    speculator_.reset();
    slots_.clear();
    batch_.reset();
    mirror_.reset();
    if (ctx_) llama_free(ctx_);
    ctx_ = nullptr;
    threadpools_.reset();
    if (had_context) release_freed_memory();
}

void Engine::create_context(uint32_t n_draft_max) {
    free_context();
    model_->check_connections();  // never allocate on a broken RPC connection
    const uint32_t n_seq = options_.n_parallel;
    const uint32_t n_rs_seq = recurrent_ ? n_draft_max : 0;
    const uint32_t per_seq = n_draft_max + 1;
    if (n_seq * per_seq > context_.n_batch) {
        throw InvalidArgument("n_parallel x (draft length + 1) = " + std::to_string(n_seq * per_seq) +
                              " rows do not fit one batch of n_batch = " + std::to_string(context_.n_batch) +
                              ": raise -b or lower -np / the draft length");
    }
    llama_context_params params = make_context_params(context_, n_rs_seq, n_seq * per_seq, n_seq);
    params.n_outputs_max_per_seq = per_seq;
    params.abort_callback = [](void* data) { return static_cast<Engine*>(data)->abort_.load(); };
    params.abort_callback_data = this;
    clear_thread_errors();
    ctx_ = llama_init_from_model(handle_.get(), params);
    if (ctx_ == nullptr) {
        throw DecodeError("llama.cpp could not create a context (n_ctx=" + std::to_string(context_.n_ctx) +
                          ", n_parallel=" + std::to_string(n_seq) + "): " + take_thread_errors());
    }
    // Persistent CPU worker threads, as llama.cpp's own tools attach (common_init_from_params).
    // A ggml built without OpenMP otherwise starts and joins n_threads - 1 threads for every
    // graph, i.e. every decoded token. (With OpenMP, libgomp keeps its threads anyway.)
    common_params threads;
    threads.cpuparams.n_threads = static_cast<int>(params.n_threads);
    threads.cpuparams_batch.n_threads = static_cast<int>(params.n_threads_batch);
    threadpools_ = std::make_unique<common_threadpools>();
    threadpools_->init(ctx_, threads);
    n_rs_seq_ = n_rs_seq;
    ctx_params_ = params;
    batch_ = std::make_unique<common_batch>(ctx_);
    mirror_ = std::make_unique<common_batch>(ctx_);
    // llama.cpp may round the context up; the user's n_ctx is the limit they asked for.
    const uint32_t asked = context_.kv_unified ? context_.n_ctx : context_.n_ctx / n_seq;
    n_ctx_seq_ = std::min(llama_n_ctx_seq(ctx_), asked);
    for (uint32_t i = 0; i < n_seq; ++i) {
        slots_.push_back(std::make_unique<Slot>(ctx_, static_cast<llama_seq_id>(i), recurrent_));
    }
}

void Engine::warm_up() {
    // As common_init_from_params: BOS and EOS (what the vocabulary has) in sequence 0, then the
    // memory cleared. Only the target context: a draft context is warmed by its first request.
    const llama_vocab* vocab = llama_model_get_vocab(handle_.get());
    std::vector<llama_token> tokens;
    if (llama_vocab_bos(vocab) != LLAMA_TOKEN_NULL) tokens.push_back(llama_vocab_bos(vocab));
    if (llama_vocab_eos(vocab) != LLAMA_TOKEN_NULL) tokens.push_back(llama_vocab_eos(vocab));
    if (tokens.empty()) tokens.push_back(0);
    clear_thread_errors();
    common_batch batch = common_batch_get_one(ctx_, tokens);
    const int32_t rc = llama_process(ctx_, LLAMA_PROCESS_TYPE_DECODE, batch.get());
    llama_memory_clear(llama_get_memory(ctx_), true);
    llama_synchronize(ctx_);
    llama_perf_context_reset(ctx_);
    model_->check_connections();  // an RPC server lost during the warm-up is a failed load
    if (rc != 0) {
        throw DecodeError("the warm-up decode failed (llama.cpp status " + std::to_string(rc) +
                          "): " + take_thread_errors() + "; load with warmup=False (--no-warmup) to skip it");
    }
}

bool Engine::wants_speculator(const SpeculatorOptions& wanted) const {
    if (!wanted.enabled()) return false;
    if (!speculator_ || !speculator_->serves(wanted)) return true;
    return static_cast<uint32_t>(wanted.n_max) > n_rs_seq_ && recurrent_;
}

void Engine::configure_speculator(const SpeculatorOptions& wanted) {
    // Called with no request active: the caches may be dropped. The context is made again: its
    // output rows and recurrent snapshots per sequence follow the draft length.
    create_context(static_cast<uint32_t>(wanted.n_max));
    speculator_ = std::make_unique<Speculator>(wanted, handle_.get(), model_->mtp_loaded(), ctx_, ctx_params_,
                                               options_.n_parallel, &model_->placement());
    step_costs_ = StepCosts();
    follow_costs_ = StepCosts();
    draft_costs_ = DraftCosts();
    acceptance_ = AcceptanceEstimate(wanted.n_max, AcceptanceEstimate::kPrior, kEngineAcceptanceWeight);
    adaptive_plain_requests_ = 0;
    adaptive_recheck_every_ = kAdaptiveRecheckFirst;
    std::lock_guard<std::mutex> lock(mutex_);
    auto& per_pos = metrics_.spec_decode_num_accepted_tokens_per_pos;
    per_pos.resize(std::max<size_t>(per_pos.size(), static_cast<size_t>(speculator_->n_max())), 0);
}

// --- submission -------------------------------------------------------------------------------

std::shared_ptr<Request> Engine::submit(RequestOptions opts) {
    if (model_->closed()) throw ModelClosedError("the model is closed");
    if (opts.prompt.empty()) throw InvalidArgument("the prompt is empty");
    for (llama_token t : opts.prompt) model_->check_token(t);
    if (opts.prompt.size() >= n_ctx_seq_) {
        throw ContextOverflowError("the prompt has " + std::to_string(opts.prompt.size()) +
                                   " tokens but a sequence holds " + std::to_string(n_ctx_seq_) +
                                   (options_.n_parallel > 1 && !context_.kv_unified
                                        ? " (n_ctx / n_parallel)"
                                        : "") +
                                   ": raise n_ctx (-c) or shorten the prompt");
    }
    if (opts.speculator.enabled()) {
        const auto& s = opts.speculator;
        validate_speculator(s);
        if (static_cast<uint32_t>(s.n_max) + 2 > std::min(context_.n_batch, context_.n_ubatch)) {
            throw InvalidArgument("a verification batch of n_max + 1 = " + std::to_string(s.n_max + 1) +
                                  " tokens needs n_ubatch >= n_max + 2 (n_batch/n_ubatch are " +
                                  std::to_string(context_.n_batch) + "/" + std::to_string(context_.n_ubatch) +
                                  "): lower n_max or raise -b/-ub");
        }
        if (s.type == "draft-mtp" && s.model_path.empty()) {
            if (model_->n_mtp_layers() == 0) {
                throw MTPUnavailableError(
                    "this model has no MTP head: the GGUF has no '<arch>.nextn_predict_layers' key and no "
                    "blk.N.nextn.* tensors. Use a GGUF converted with the MTP weights (a recent "
                    "convert_hf_to_gguf.py keeps the checkpoint's mtp.* tensors), or Speculator.none().");
            }
            if (!model_->mtp_loaded()) {
                throw MTPUnavailableError("the MTP head was not loaded: open the model with load_mtp=True "
                                          "(or load_mtp=None, the default)");
            }
        }
        if (options_.speculator) {
            const SpeculatorOptions& pinned = *options_.speculator;
            SpeculatorOptions capped = s;
            capped.n_max = std::min(s.n_max, pinned.n_max);
            const bool same = pinned.enabled() && capped.type == pinned.type && capped.model_path == pinned.model_path;
            if (!same || s.n_max > pinned.n_max) {
                throw InvalidArgument("this model's speculator was set at load (" + pinned.type + ", n_max " +
                                      std::to_string(pinned.n_max) +
                                      "): a request may use it with n_max up to that, or no speculator");
            }
        }
    }
    Pending pending{nullptr, make_sampler(opts.sampling, *model_)};
    pending.request = std::make_shared<Request>(std::move(opts));
    std::shared_ptr<Request> request = pending.request;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_) throw ModelClosedError("the model is closed");
        if (queue_.size() >= options_.max_queue) {
            throw QueueFullError(std::to_string(queue_.size()) + " requests already wait for one of the " +
                                 std::to_string(options_.n_parallel) +
                                 " slots (max_queue): retry later, or raise n_parallel / max_queue");
        }
        queue_.push_back(std::move(pending));
    }
    wake_.notify_all();
    return request;
}

// --- the scheduler thread ---------------------------------------------------------------------

Slot* Engine::choose_slot(const RequestOptions& request) {
    // As llama-server: the free slot whose cache shares the longest prefix with the prompt; among
    // equals, the least recently used (its cache is the least likely to be wanted again).
    Slot* best = nullptr;
    size_t best_prefix = 0;
    for (auto& slot : slots_) {
        if (slot->active()) continue;
        size_t prefix = request.cache_prompt ? slot->cache().common_prefix(request.prompt) : 0;
        if (request.speculator.enabled() && !slot->draft_synced) prefix = 0;
        if (best == nullptr || prefix > best_prefix || (prefix == best_prefix && slot->last_used < best->last_used)) {
            best = slot.get();
            best_prefix = prefix;
        }
    }
    return best;
}

void Engine::run() {
    std::vector<Pending> admitted;
    while (true) {
        admitted.clear();
        bool reset = false;
        std::optional<SpeculatorOptions> reconfigure;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            auto n_active = [&] {
                return static_cast<size_t>(std::count_if(slots_.begin(), slots_.end(),
                                                          [](const auto& s) { return s->active(); }));
            };
            wake_.wait(lock, [&] {
                return stop_ || reset_requested_ || n_active() > 0 ||
                       (!queue_.empty() && n_active() < slots_.size());
            });
            if (stop_) break;
            reset = reset_requested_;
            reset_requested_ = false;
            // Cancelled requests leave the queue at once.
            for (auto it = queue_.begin(); it != queue_.end();) {
                if (it->request->cancelled()) {
                    GenerationResult r;
                    r.finish_reason = FinishReason::kCancelled;
                    it->request->finish(std::move(r));
                    it = queue_.erase(it);
                } else {
                    ++it;
                }
            }
            size_t free = slots_.size() - n_active();
            while (free > 0 && !queue_.empty()) {
                const auto& wanted = queue_.front().request->options().speculator;
                if (wants_speculator(wanted)) {
                    // A different speculator: only when nothing runs (a barrier; FIFO order kept).
                    if (n_active() > 0 || !admitted.empty()) break;
                    reconfigure = wanted;
                    admitted.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                    break;
                }
                admitted.push_back(std::move(queue_.front()));
                queue_.pop_front();
                --free;
            }
        }
        if (reset) {
            for (auto& slot : slots_) {
                if (!slot->active()) slot->cache().clear(speculator_ ? speculator_->mem_dft() : nullptr);
            }
        }
        if (reconfigure) {
            try {
                configure_speculator(*reconfigure);
            } catch (...) {
                for (auto& p : admitted) p.request->fail(std::current_exception());
                admitted.clear();
                // Without a speculator the engine goes on, on a context without draft rows.
                try {
                    if (ctx_ == nullptr || speculator_ == nullptr) create_context(0);
                } catch (...) {
                    // No context at all: nothing can run any more.
                    std::lock_guard<std::mutex> lock(mutex_);
                    stop_ = true;
                    for (auto& p : queue_) p.request->fail(std::current_exception());
                    queue_.clear();
                    break;
                }
                continue;
            }
        }
        try {
            step(admitted);
        } catch (...) {
            fail_all(std::current_exception());
        }
    }
    // Closing: every request still here ends with ClosedError.
    const auto closed = std::make_exception_ptr(ModelClosedError("the model was closed while this request ran"));
    for (auto& p : admitted) p.request->fail(closed);
    for (auto& slot : slots_) {
        if (slot->active()) {
            slot->request().fail(closed);
            slot->release();
        }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& p : queue_) p.request->fail(closed);
    queue_.clear();
    metrics_.requests_processing = 0;
}

void Engine::fail_all(std::exception_ptr error) {
    for (auto& slot : slots_) {
        if (slot->active()) fail(*slot, error);
    }
}

void Engine::fail(Slot& slot, std::exception_ptr error) {
    // The memory of this sequence may be half-updated: forget it.
    slot.cache().clear(speculator_ ? speculator_->mem_dft() : nullptr);
    slot.draft_synced = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.requests_processing -= 1;
    }
    slot.request().fail(std::move(error));
    slot.release();
}

double Engine::plain_step_seconds() const { return step_costs_.seconds(1); }

FollowedSteps Engine::followed_steps() const { return FollowedSteps(step_costs_, follow_costs_); }

bool Engine::adaptive_admits_drafting() {
    const int max_depth = speculator_->options().n_max;
    const FollowedSteps followed = followed_steps();
    const std::vector<double> rates = draft_depth_rates(
        acceptance_.p(), [&](int rows) { return followed.seconds(rows); },
        [&](int d) { return draft_costs_.seconds(d); }, plain_step_seconds(), max_depth);
    int depth = best_draft_depth(rates);
    // A request that starts alone measures what the depth choice is made from when some of it was
    // never measured or not lately: it drafts to the full depth, and its sequence tries each draft
    // length a few steps (DraftController::choose).
    const bool alone = std::none_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->active(); });
    bool stale = step_costs_.samples(1) < DraftController::kTrustedSamples;
    for (int rows = 1; rows <= max_depth + 1; ++rows) {
        stale = stale || followed.samples(rows) < DraftController::kTrustedSamples;
    }
    bool refresh = false;
    if (alone && stale) {
        depth = max_depth;
    } else if (alone && depth > 0) {
        // Only the depth in use is measured as it runs: another depth's costs are scaled from it
        // by ratios measured when both ran, and the draft positions past the depth in use are
        // not verified at all. So a depth nearly as good by the estimates, last run long ago, is
        // run now and then (at most kAdaptiveRefreshMargin slower by the estimates), lest a close
        // call be settled for good on old measurements. (While serving plainly, the rechecks
        // below measure drafting.)
        auto age = [&](int d) { return d == 0 ? step_costs_.age(1) : follow_costs_.age(d + 1); };
        int candidate = -1;
        for (int d = 0; d <= max_depth; ++d) {
            if (d == depth || age(d) < kAdaptiveRefreshTicks) continue;
            if (rates[static_cast<size_t>(d)] < (1.0 - kAdaptiveRefreshMargin) * rates[static_cast<size_t>(depth)]) continue;
            if (candidate < 0 || rates[static_cast<size_t>(d)] > rates[static_cast<size_t>(candidate)]) candidate = d;
        }
        if (candidate >= 0) {
            depth = candidate;
            refresh = true;
        }
    }
    if (log_enabled(kDebug)) {
        std::string line = "adaptive: depth " + std::to_string(depth) + " of " + std::to_string(max_depth) +
                           (alone && stale ? " (measuring the costs)" : refresh ? " (measured again)" : "");
        auto add = [&line](const char* label, int first, int last, const std::function<double(int)>& value) {
            line += label;
            char buf[32];
            for (int i = first; i <= last; ++i) {
                std::snprintf(buf, sizeof buf, " %.3f", value(i));
                line += buf;
            }
        };
        add("; acceptance per position", 0, max_depth - 1, [&](int i) { return acceptance_.p()[static_cast<size_t>(i)]; });
        add("; plain step ms", 1, 1, [&](int) { return plain_step_seconds() * 1e3; });
        add("; followed step ms by rows", 1, max_depth + 1, [&](int r) { return followed.seconds(r) * 1e3; });
        add("; draft ms by depth", 1, max_depth, [&](int d) { return draft_costs_.seconds(d) * 1e3; });
        log_line(kDebug, line);
    }
    // The drafting depth can change only while no sequence is mid-generation with a draft.
    const bool busy = std::any_of(slots_.begin(), slots_.end(), [](const auto& s) {
        return s->state() == Slot::State::kGenerating && s->speculate();
    });
    if (alone && stale) {
        speculator_->set_depth(max_depth);
        return true;
    }
    if (depth > 0) {
        if (!busy) speculator_->set_depth(depth);
        adaptive_plain_requests_ = 0;
        adaptive_recheck_every_ = kAdaptiveRecheckFirst;
        return true;
    }
    // Plain decoding wins at every depth, on costs and acceptance measured here. Even at k = 0 a
    // speculating sequence pays for the MTP head following every token (its cache must stay in
    // step for a draft to be possible) and for its shadow probes, so such a request is served
    // with no MTP work at all -- except now and then one (adaptive_recheck_every_) that
    // speculates (and probes) to notice when drafting starts to pay.
    bool measured = false;
    for (int d = 1; d <= max_depth; ++d) measured = measured || draft_costs_.known(d);
    if (!measured) return true;
    if (++adaptive_plain_requests_ >= adaptive_recheck_every_) {
        adaptive_plain_requests_ = 0;
        adaptive_recheck_every_ = std::min(adaptive_recheck_every_ * 2, kAdaptiveRecheckMax);
        return true;
    }
    return false;
}

void Engine::start(Slot& slot, Pending&& pending) {
    const RequestOptions& opts = pending.request->options();
    bool speculate = opts.speculator.enabled() && speculator_ != nullptr;
    if (speculate && speculator_->options().adaptive) speculate = adaptive_admits_drafting();
    llama_memory_t mem_dft = speculator_ ? speculator_->mem_dft() : nullptr;
    if (!opts.cache_prompt || (speculate && !slot.draft_synced)) slot.cache().clear(mem_dft);
    const size_t n_reused = slot.cache().reuse(opts.prompt, mem_dft);
    if (n_reused == 0) slot.draft_synced = speculate;  // cleared: both memories start empty
    const int32_t n_draft = speculate ? std::min(opts.speculator.n_max, speculator_->options().n_max) : 0;
    slot.start(std::move(pending.request), std::move(pending.sampler), speculate, n_draft, n_reused,
               llama_model_get_vocab(handle_.get()));
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.requests_processing += 1;
    }
    if (speculate && speculator_->options().adaptive) {
        slot.controller.seed(acceptance_);  // a new sequence starts from what the others saw
    }
    slot.last_used = ++clock_;
}

void Engine::finish(Slot& slot) {
    GenerationResult result = slot.finish_result();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.requests_processing -= 1;  // before the caller can see the result
        metrics_.requests_finished_total += 1;
        metrics_.tokens_predicted_total += static_cast<uint64_t>(result.stats.predicted_n);
        metrics_.tokens_predicted_seconds_total += result.stats.predicted_ms / 1e3;
    }
    slot.request().finish(std::move(result));
    slot.release();
}

bool Engine::evict_idle(const Slot* except) {
    bool any = false;
    for (auto& slot : slots_) {
        if (slot.get() == except || slot->active() || slot->cache().tokens().empty()) continue;
        slot->cache().clear(speculator_ ? speculator_->mem_dft() : nullptr);
        any = true;
    }
    return any;
}

void Engine::step(std::vector<Pending>& admitted) {
    for (auto& pending : admitted) {
        Slot* slot = choose_slot(pending.request->options());
        if (slot == nullptr) {  // cannot happen: admission counted free slots
            pending.request->fail(std::make_exception_ptr(DecodeError("no free slot")));
            continue;
        }
        try {
            start(*slot, std::move(pending));
        } catch (...) {
            pending.request->fail(std::current_exception());
        }
    }
    admitted.clear();

    llama_model* model = handle_.get();
    const int32_t n_ctx = static_cast<int32_t>(n_ctx_seq_);
    const int32_t n_batch = static_cast<int32_t>(llama_n_batch(ctx_));
    const int32_t n_ubatch = static_cast<int32_t>(llama_n_ubatch(ctx_));
    llama_memory_t mem_tgt = llama_get_memory(ctx_);
    llama_memory_t mem_dft = speculator_ ? speculator_->mem_dft() : nullptr;
    (void)model;
    // A broken RPC connection (csrc/ggml_rpc/failsafe.h) lets a graph finish on garbage instead
    // of aborting: nothing is decoded once one broke, and no result of a step it broke in is used.
    model_->check_connections();

    // Cancelled requests and full contexts end before the batch is built.
    for (auto& slot : slots_) {
        if (!slot->active()) continue;
        if (slot->request().cancelled()) {
            slot->cancel_generation();
            finish(*slot);
            continue;
        }
        if (slot->state() == Slot::State::kGenerating &&
            static_cast<int32_t>(slot->cache().tokens().size()) + 1 >= n_ctx) {
            slot->stop_for_length();
            finish(*slot);
        }
    }

    std::vector<Slot*> generating, prompting;
    for (auto& slot : slots_) {
        if (slot->state() == Slot::State::kGenerating) generating.push_back(slot.get());
        else if (slot->state() == Slot::State::kPrompt) prompting.push_back(slot.get());
    }
    if (generating.empty() && prompting.empty()) return;

    // ---- drafts: one pass for every speculating slot ------------------------------------------
    std::vector<DraftJob> jobs;
    std::vector<Slot*> probes;  // adaptive slots drafting a shadow probe (not verified)
    for (Slot* slot : generating) {
        slot->draft.clear();
        if (!slot->speculate()) continue;
        const auto n_past = static_cast<int32_t>(slot->cache().tokens().size());  // position of id_last
        // Never past the context, the token budget, or the recurrent snapshots.
        int32_t budget = std::min(n_ctx - n_past - 2, slot->n_draft());
        const auto& sampling = slot->options().sampling;
        if (sampling.max_tokens >= 0) {
            budget = std::min(budget, sampling.max_tokens - slot->n_generated() - 1);
        }
        if (n_rs_seq_ > 0) budget = std::min(budget, static_cast<int32_t>(n_rs_seq_));
        budget = std::min(budget, speculator_->depth());
        bool probe = false;
        if (speculator_->options().adaptive && budget > 0) {
            const int other_rows = static_cast<int>(generating.size()) - 1;
            const auto choice = slot->controller.choose(followed_steps(), draft_costs_, speculator_->depth(), other_rows);
            probe = choice.probe;
            budget = std::min(budget, choice.length);
        }
        auto& histogram = slot->stats().draft_len_histogram;
        if (!histogram.empty()) {
            const int32_t verified = probe ? 0 : budget;
            histogram[static_cast<size_t>(std::clamp<int32_t>(verified, 0, static_cast<int32_t>(histogram.size()) - 1))] += 1;
        }
        if (budget <= 0) continue;
        if (probe) probes.push_back(slot);
        jobs.push_back({slot->id(), n_past, slot->id_last, budget, &slot->cache().tokens(), &slot->draft});
    }
    double draft_s = 0.0;
    if (!jobs.empty()) {
        clear_thread_errors();
        const auto t0 = Clock::now();
        speculator_->draft(jobs);
        draft_s = seconds_since(t0);
        model_->check_connections();
    }
    for (Slot* slot : probes) {
        // a shadow probe: compared with the coming tokens, never verified (no rows, no rollback)
        slot->controller.start_probe(std::vector<int32_t>(slot->draft.begin(), slot->draft.end()));
        slot->draft.clear();
    }

    // ---- the batch ----------------------------------------------------------------------------
    // Rows of slots whose draft context mirrors the target come first: the speculator is handed
    // exactly those rows. Within each group, verification rows sorted by count (llama.cpp splits
    // a hybrid model's batch into micro-batches of equal rows per sequence), prompt chunks last.
    auto by_rows = [](const Slot* a, const Slot* b) { return a->draft.size() < b->draft.size(); };
    std::vector<Slot*> order;
    for (bool mirrored : {true, false}) {
        std::vector<Slot*> gen, pro;
        for (Slot* s : generating) {
            if (s->speculate() == mirrored) gen.push_back(s);
        }
        for (Slot* s : prompting) {
            if (s->speculate() == mirrored) pro.push_back(s);
        }
        std::stable_sort(gen.begin(), gen.end(), by_rows);
        order.insert(order.end(), gen.begin(), gen.end());
        order.insert(order.end(), pro.begin(), pro.end());
    }

    common_batch& batch = *batch_;
    batch.clear();
    int32_t n_mirrored = 0;
    int32_t n_decode_rows = 0;
    for (Slot* s : generating) n_decode_rows += 1 + static_cast<int32_t>(s->draft.size());
    // A long prompt shares the step with generating slots one micro-batch at a time, so that it
    // never holds their next token back for more than one micro-batch.
    int32_t prompt_budget = generating.empty() ? n_batch - n_decode_rows
                                               : std::max<int32_t>(n_ubatch - n_decode_rows, 32);
    prompt_budget = std::min(prompt_budget, n_batch - n_decode_rows);
    struct PromptChunk {
        Slot* slot;
        size_t begin;
        size_t end;
    };
    std::vector<PromptChunk> chunks;
    std::vector<Slot*> in_batch;
    for (Slot* s : order) {
        s->rows.clear();
        if (s->state() == Slot::State::kGenerating) {
            const auto n_past = static_cast<llama_pos>(s->cache().tokens().size());
            s->rows.push_back(batch.add(s->id_last, n_past, s->id(), true));
            for (size_t i = 0; i < s->draft.size(); ++i) {
                s->rows.push_back(batch.add(s->draft[i], n_past + 1 + static_cast<llama_pos>(i), s->id(), true));
            }
        } else {
            if (prompt_budget <= 0) continue;
            const auto& prompt = s->options().prompt;
            const size_t done = s->n_prompt_done();
            // Recurrent checkpoints are taken between decodes, at the chunk boundaries they need.
            if (s->checkpoints() && (done == s->checkpoint_early() || done == s->checkpoint_before_last()) &&
                done > 0) {
                s->cache().checkpoint();
            }
            size_t end = std::min(prompt.size(), done + static_cast<size_t>(prompt_budget));
            if (s->checkpoints()) {
                if (done < s->checkpoint_early() && end > s->checkpoint_early()) end = s->checkpoint_early();
                if (done < s->checkpoint_before_last() && end > s->checkpoint_before_last()) end = s->checkpoint_before_last();
            }
            if (end <= done) continue;
            for (size_t pos = done; pos < end; ++pos) {
                const int32_t row = batch.add(prompt[pos], static_cast<llama_pos>(pos), s->id(), pos + 1 == prompt.size());
                if (pos + 1 == prompt.size()) s->rows.push_back(row);
            }
            prompt_budget -= static_cast<int32_t>(end - done);
            chunks.push_back({s, done, end});
        }
        in_batch.push_back(s);
        if (s->speculate()) n_mirrored = batch.size();
    }
    if (batch.size() == 0) return;

    // ---- decode -------------------------------------------------------------------------------
    clear_thread_errors();
    const auto t_decode = Clock::now();
    int32_t rc = llama_process(ctx_, LLAMA_PROCESS_TYPE_DECODE, batch.get());
    if (rc == 1 && evict_idle(nullptr)) {
        rc = llama_process(ctx_, LLAMA_PROCESS_TYPE_DECODE, batch.get());
    }
    if (rc == 1) {
        // The shared KV pool is full: the request holding the most of it ends ("length"), and the
        // step is planned again without it. Nothing of this batch reached the memory.
        Slot* victim = nullptr;
        for (Slot* s : in_batch) {
            if (victim == nullptr || s->cache().tokens().size() > victim->cache().tokens().size()) victim = s;
        }
        for (Slot* s : generating) s->draft.clear();
        if (victim->state() == Slot::State::kGenerating) {
            victim->stop_for_length();
            finish(*victim);
        } else {
            fail(*victim, std::make_exception_ptr(ContextOverflowError(
                              "the context is full: the prompt does not fit next to the other requests; "
                              "raise n_ctx (-c) or lower n_parallel")));
        }
        return;
    }
    if (rc == 2 && abort_.load()) throw ModelClosedError("the model was closed while this request ran");
    model_->check_connections();
    if (rc != 0) {
        throw DecodeError("llama.cpp failed to decode a batch of " + std::to_string(batch.size()) +
                          " tokens (code " + std::to_string(rc) + "): " + take_thread_errors());
    }
    // Outputs are copied asynchronously; the speculator reads the hidden states next.
    llama_synchronize(ctx_);
    model_->check_connections();
    const double follow_started_s = seconds_since(t_decode);
    if (speculator_ && n_mirrored > 0) {
        common_batch& mirror = *mirror_;
        mirror.clear();
        for (int32_t i = 0; i < n_mirrored; ++i) {
            const auto& t = batch.tokens[static_cast<size_t>(i)];
            mirror.add(t.id, t.pos[0], t.seq_id, t.output);
        }
        const bool followed = speculator_->process(mirror);
        model_->check_connections();
        if (!followed) {
            if (abort_.load()) throw ModelClosedError("the model was closed while this request ran");
            throw DecodeError("the draft context failed to follow the batch: " + take_thread_errors());
        }
    }
    const double decode_s = seconds_since(t_decode);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.n_decode_total += 1;
        metrics_.n_busy_slots_total += in_batch.size();
        metrics_.decode_seconds_total += decode_s;
        metrics_.draft_seconds_total += draft_s;
        metrics_.n_draft_passes_total += jobs.empty() ? 0 : 1;
    }

    // ---- prompt chunks: into the cache; a finished prompt samples its first token ---------------
    for (const auto& c : chunks) {
        Slot* s = c.slot;
        const auto& prompt = s->options().prompt;
        auto& cached = s->cache().tokens();
        cached.insert(cached.end(), prompt.begin() + static_cast<std::ptrdiff_t>(c.begin),
                      prompt.begin() + static_cast<std::ptrdiff_t>(c.end));
        if (c.end < prompt.size()) continue;
        try {
            const llama_token first = common_sampler_sample(s->sampler(), ctx_, s->rows.front());
            common_sampler_accept(s->sampler(), first, true);
            s->begin_generation(first);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                metrics_.prompt_tokens_total += static_cast<uint64_t>(s->stats().prompt_n);
                metrics_.prompt_seconds_total += s->stats().prompt_ms / 1e3;
            }
            if (s->speculate()) speculator_->begin(s->id(), cached);
            s->emit({first}, {s->rows.front()}, ctx_);
            s->flush_chunk();
            if (s->done()) finish(*s);
        } catch (...) {
            fail(*s, std::current_exception());
        }
    }

    // ---- verification: accept with each slot's sampler, roll rejected tails back ---------------
    for (Slot* s : generating) {
        if (!s->active() || s->rows.empty()) continue;
        try {
            const std::vector<llama_token> ids =
                common_sampler_sample_and_accept_n(s->sampler(), ctx_, s->rows, s->draft);
            const size_t n_accepted = ids.size() - 1;
            auto& stats = s->stats();
            if (!s->draft.empty()) {
                if (speculator_->options().adaptive) {
                    s->controller.verified(static_cast<int>(s->draft.size()), static_cast<int>(n_accepted));
                    acceptance_.update(static_cast<int>(s->draft.size()), static_cast<int>(n_accepted));
                }
                speculator_->accept(s->id(), static_cast<uint16_t>(n_accepted));
                stats.num_drafts += 1;
                stats.draft_n += static_cast<int32_t>(s->draft.size());
                stats.draft_n_accepted += static_cast<int32_t>(n_accepted);
                for (size_t i = 0; i < n_accepted && i < stats.accepted_per_position.size(); ++i) {
                    stats.accepted_per_position[i] += 1;
                }
                std::lock_guard<std::mutex> lock(mutex_);
                metrics_.spec_decode_num_drafts += 1;
                metrics_.spec_decode_num_draft_tokens += s->draft.size();
                metrics_.spec_decode_num_accepted_tokens += n_accepted;
                auto& per_pos = metrics_.spec_decode_num_accepted_tokens_per_pos;
                for (size_t i = 0; i < n_accepted && i < per_pos.size(); ++i) per_pos[i] += 1;
            }
            auto& cached = s->cache().tokens();
            cached.push_back(s->id_last);
            cached.insert(cached.end(), ids.begin(), ids.end() - 1);
            if (n_accepted < s->draft.size()) {
                // Roll back the rejected tail: the recurrent layers use their snapshots (n_rs_seq).
                const auto keep = static_cast<llama_pos>(cached.size());
                if (!llama_memory_seq_rm(mem_tgt, s->id(), keep, -1) ||
                    (mem_dft && s->draft_synced && !llama_memory_seq_rm(mem_dft, s->id(), keep, -1))) {
                    throw DecodeError("could not roll back rejected draft tokens; the slot's cache was reset");
                }
            }
            s->id_last = ids.back();
            for (llama_token t : ids) {
                if (!s->controller.probing()) break;
                const auto [drafted, accepted] = s->controller.observe(t);
                if (drafted > 0) acceptance_.update(drafted, accepted);
            }
            s->emit(ids, std::vector<int32_t>(s->rows.begin(), s->rows.begin() + static_cast<std::ptrdiff_t>(ids.size())),
                    ctx_);
            s->flush_chunk();
            if (s->done()) finish(*s);
        } catch (...) {
            fail(*s, std::current_exception());
        }
    }
    for (Slot* s : in_batch) {
        if (s->active() && !s->speculate()) s->draft_synced = false;
    }
    if (speculator_ && speculator_->options().adaptive) {
        // What a step of this many rows costs: the decode, sampling, verifying and rolling back;
        // apart from it, the draft context following the step, and the drafting pass.
        // Generation-only steps measure them (prompt chunks would not).
        const double step_s = seconds_since(t_decode);
        const double follow_s = decode_s - follow_started_s;
        if (chunks.empty()) {
            step_costs_.add(batch.size(), step_s - follow_s);
            if (n_mirrored > 0 && n_mirrored == batch.size()) follow_costs_.add(n_mirrored, follow_s);
        }
        if (!jobs.empty()) draft_costs_.add(speculator_->depth(), draft_s);
        step_costs_.tick();
        follow_costs_.tick();
        draft_costs_.tick();
    }

    // ---- gauges -------------------------------------------------------------------------------
    uint64_t kv = 0;
    for (auto& slot : slots_) kv += slot->cache().tokens().size();
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.kv_cache_tokens = kv;
    metrics_.kv_cache_usage_ratio = static_cast<double>(kv) / static_cast<double>(llama_n_ctx(ctx_));
}

}  // namespace llama_mtp
