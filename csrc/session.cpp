#include "session.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common.h"
#include "context_params.h"
#include "errors.h"
#include "log_bridge.h"
#include "sampling.h"
#include "text_stream.h"

namespace llama_mtp {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

bool same_speculator(const SpeculatorOptions& a, const SpeculatorOptions& b) {
    return a.types == b.types && a.n_max == b.n_max && a.n_min == b.n_min && a.p_min == b.p_min &&
           a.draft_model_path == b.draft_model_path && a.draft_gpu_layers == b.draft_gpu_layers &&
           a.draft_cache_type_k == b.draft_cache_type_k && a.draft_cache_type_v == b.draft_cache_type_v &&
           a.ngram_size_n == b.ngram_size_n && a.ngram_size_m == b.ngram_size_m &&
           a.ngram_min_hits == b.ngram_min_hits;
}

common_params_sampling to_common(const SamplingOptions& s, const Model& model) {
    if (!(s.temperature >= 0.0f)) throw InvalidArgument("temperature must be >= 0");
    if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) throw InvalidArgument("top_p must be in (0, 1]");
    if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) throw InvalidArgument("min_p must be in [0, 1]");
    if (!(s.repeat_penalty > 0.0f)) throw InvalidArgument("repeat_penalty must be > 0");
    common_params_sampling p;
    p.temp = s.temperature;
    p.top_k = s.top_k;
    p.top_p = s.top_p;
    p.min_p = s.min_p;
    p.typ_p = s.typical_p;
    p.penalty_repeat = s.repeat_penalty;
    p.penalty_last_n = s.repeat_last_n;
    p.penalty_present = s.presence_penalty;
    p.penalty_freq = s.frequency_penalty;
    p.seed = s.seed;
    p.ignore_eos = s.ignore_eos;
    p.no_perf = true;
    for (const auto& [token, bias] : s.logit_bias) {
        model.check_token(token);
        p.logit_bias.push_back({token, bias});
    }
    if (s.ignore_eos) {
        const llama_vocab* vocab = llama_model_get_vocab(model.handle().get());
        for (llama_token t = 0; t < llama_vocab_n_tokens(vocab); ++t) {
            if (llama_vocab_is_eog(vocab, t)) p.logit_bias.push_back({t, -INFINITY});
        }
    }
    if (!s.grammar.empty()) p.grammar = {COMMON_GRAMMAR_TYPE_USER, s.grammar};
    p.reasoning_budget_tokens = s.reasoning_budget_tokens;
    p.reasoning_budget_start = s.reasoning_budget_start;
    p.reasoning_budget_end = s.reasoning_budget_end;
    p.reasoning_budget_forced = s.reasoning_budget_forced;
    p.generation_prompt = s.generation_prompt;
    return p;
}

// Appends accepted tokens to the result, stopping at EOG / stop string / max_tokens.
struct Emitter {
    const llama_vocab* vocab;
    const SamplingOptions& sampling;
    TextStream stream;
    GenerationResult& result;
    std::string pending_text;
    std::vector<llama_token> pending_tokens;
    bool done = false;

    Emitter(const llama_vocab* v, const SamplingOptions& s, GenerationResult& r)
        : vocab(v), sampling(s), stream(s.stop), result(r) {}

    void push(llama_token t) {
        if (done) return;
        result.tokens.push_back(t);
        pending_tokens.push_back(t);
        if (!sampling.ignore_eos && llama_vocab_is_eog(vocab, t)) {
            result.finish_reason = FinishReason::kEos;
            done = true;
            return;
        }
        pending_text += stream.push(common_token_to_piece(vocab, t, false));
        if (stream.stopped()) {
            result.finish_reason = FinishReason::kStop;
            result.stop_reason = stream.matched_stop();
            done = true;
            return;
        }
        if (sampling.max_tokens >= 0 && static_cast<int32_t>(result.tokens.size()) >= sampling.max_tokens) {
            result.finish_reason = FinishReason::kLength;
            done = true;
        }
    }
};

}  // namespace

Session::Session(std::shared_ptr<Model> model, const ContextOptions& options)
    : model_(std::move(model)), handle_(model_->handle()), options_(options) {
    // Validate the options now, so a bad n_ctx fails at construction, not at the first call.
    make_context_params(options_, 0, 1);
}

Session::~Session() { free_context(); }

void Session::free_context() {
    speculator_.reset();
    cache_.reset();
    if (ctx_) llama_free(ctx_);
    ctx_ = nullptr;
    threadpools_.reset();
}

uint32_t Session::n_ctx() const { return options_.n_ctx; }

void Session::reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cache_) cache_->clear(speculator_ ? speculator_->mem_dft() : nullptr);
}

void Session::ensure_context(uint32_t n_rs_seq, uint32_t n_outputs_max) {
    llama_model* model = handle_.get();
    const bool recurrent = llama_model_is_recurrent(model) || llama_model_is_hybrid(model);
    if (!recurrent) n_rs_seq = 0;
    if (ctx_ && n_rs_seq_ == n_rs_seq && ctx_params_.n_outputs_max >= n_outputs_max) return;
    free_context();
    ctx_params_ = make_context_params(options_, n_rs_seq, std::max<uint32_t>(n_outputs_max, 4));
    clear_thread_errors();
    ctx_ = llama_init_from_model(model, ctx_params_);
    if (ctx_ == nullptr) {
        throw DecodeError("llama.cpp could not create a context (n_ctx=" + std::to_string(options_.n_ctx) +
                          "): " + take_thread_errors());
    }
    // Persistent CPU worker threads, as llama.cpp's own tools attach (common_init_from_params).
    // A ggml built without OpenMP otherwise starts and joins n_threads - 1 threads for every
    // graph, i.e. every decoded token. (With OpenMP, the default where the compiler has it,
    // libgomp keeps its threads and this changes nothing.)
    common_params threads;
    threads.cpuparams.n_threads = static_cast<int>(ctx_params_.n_threads);
    threads.cpuparams_batch.n_threads = static_cast<int>(ctx_params_.n_threads_batch);
    threadpools_ = std::make_unique<common_threadpools>();
    threadpools_->init(ctx_, threads);
    n_rs_seq_ = n_rs_seq;
    cache_ = std::make_unique<PromptCache>(ctx_, recurrent);
}

void Session::configure_speculator(const SpeculatorOptions& options) {
    if (!options.enabled()) {
        if (speculator_) {
            // Drafting context and target memory were filled together; start clean.
            speculator_.reset();
            cache_->clear(nullptr);
        }
        return;
    }
    if (speculator_ && same_speculator(speculator_->options(), options)) return;
    speculator_.reset();
    // The draft context starts empty: the cached prompt must be evaluated again to fill it.
    cache_->clear(nullptr);
    speculator_ = std::make_unique<Speculator>(options, handle_.get(), model_->mtp_loaded(), ctx_, ctx_params_);
}

GenerationResult Session::generate(const std::vector<llama_token>& prompt, const SamplingOptions& sampling,
                                   const SpeculatorOptions& spec_options, bool cache_prompt,
                                   const StepCallback& on_step, const CancelCheck& cancel) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (model_->closed()) throw ClosedError("the model is closed");
    if (prompt.empty()) throw InvalidArgument("the prompt is empty");
    for (llama_token t : prompt) model_->check_token(t);
    if (prompt.size() >= options_.n_ctx) {
        throw ContextOverflowError("the prompt has " + std::to_string(prompt.size()) +
                                   " tokens but the context holds " + std::to_string(options_.n_ctx) +
                                   ": raise n_ctx (-c) or shorten the prompt");
    }
    const bool speculate = spec_options.enabled();
    if (speculate && (spec_options.n_max < 1 || spec_options.n_max > 64)) {
        throw InvalidArgument("speculator n_max must be in [1, 64]");
    }
    const uint32_t n_draft = speculate ? static_cast<uint32_t>(spec_options.n_max) : 0;
    if (speculate && n_draft + 1 > std::min(options_.n_batch, options_.n_ubatch)) {
        throw InvalidArgument("a verification batch of n_max + 1 = " + std::to_string(n_draft + 1) +
                              " tokens does not fit n_batch/n_ubatch (" + std::to_string(options_.n_batch) +
                              "/" + std::to_string(options_.n_ubatch) + "): lower n_max or raise -b/-ub");
    }
    ensure_context(n_draft, n_draft + 1);
    configure_speculator(spec_options);

    llama_model* model = handle_.get();
    const llama_vocab* vocab = llama_model_get_vocab(model);
    // llama.cpp may round the context up; the user's n_ctx is the limit they asked for.
    const int32_t n_ctx = static_cast<int32_t>(std::min(llama_n_ctx(ctx_), options_.n_ctx));
    const int32_t n_batch = static_cast<int32_t>(llama_n_batch(ctx_));
    llama_memory_t mem_tgt = llama_get_memory(ctx_);
    llama_memory_t mem_dft = speculator_ ? speculator_->mem_dft() : nullptr;

    common_params_sampling sparams = to_common(sampling, *model_);
    common_sampler_ptr smpl;
    try {
        smpl.reset(common_sampler_init(model, sparams));
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("invalid sampling options: ") + e.what());
    }
    if (!smpl) throw InvalidArgument("invalid sampling options (grammar could not be parsed?)");

    GenerationResult result;
    GenerationStats& stats = result.stats;
    stats.accepted_per_pos.assign(speculator_ ? static_cast<size_t>(speculator_->n_max()) : 0, 0);
    Emitter emit(vocab, sampling, result);
    auto& cached = cache_->tokens();

    // ---- prompt --------------------------------------------------------------------------
    const auto t_prompt = Clock::now();
    if (!cache_prompt) cache_->clear(mem_dft);
    const size_t n_reused = cache_->reuse(prompt, mem_dft);
    stats.cache_n = static_cast<int32_t>(n_reused);
    stats.prompt_n = static_cast<int32_t>(prompt.size() - n_reused);

    common_batch batch(ctx_);
    auto decode = [&](const char* what) {
        const int32_t rc = llama_process(ctx_, LLAMA_PROCESS_TYPE_DECODE, batch.get());
        if (rc != 0) {
            throw DecodeError(std::string("llama.cpp failed to decode the ") + what + " (code " +
                              std::to_string(rc) + "): " + take_thread_errors());
        }
        if (speculator_ && !speculator_->process(batch)) {
            throw DecodeError(std::string("the draft context failed to follow the ") + what + ": " +
                              take_thread_errors());
        }
    };
    clear_thread_errors();
    // All prompt tokens but the last, in chunks of n_batch, then the last token alone. Recurrent
    // state is checkpointed a few tokens before the end (a chat template re-renders the tail of
    // the previous turn differently: the next turn resumes there, as llama-server does) and just
    // before the last token (the same prompt again).
    // Without a prompt cache to serve, or for a model whose memory can be truncated anywhere,
    // no checkpoint is needed and the whole prompt goes in one pass (one weight pass fewer).
    const bool checkpoints = cache_prompt && cache_->recurrent();
    const size_t last = checkpoints ? prompt.size() - 1 : prompt.size();
    const size_t early_checkpoint = checkpoints && last > n_reused + 4 ? last - 4 : 0;
    for (size_t i = n_reused; i < last;) {
        if (cancel && cancel()) {
            result.finish_reason = FinishReason::kCancelled;
            return result;
        }
        if (checkpoints && i == early_checkpoint) cache_->checkpoint();
        size_t n = std::min(static_cast<size_t>(n_batch), last - i);
        if (i < early_checkpoint && i + n > early_checkpoint) n = early_checkpoint - i;
        batch.clear();
        for (size_t j = 0; j < n; ++j) {
            const size_t pos = i + j;
            batch.add(prompt[pos], static_cast<llama_pos>(pos), 0, pos + 1 == prompt.size());
        }
        decode("prompt");
        cached.insert(cached.end(), prompt.begin() + static_cast<std::ptrdiff_t>(i),
                      prompt.begin() + static_cast<std::ptrdiff_t>(i + n));
        i += n;
    }
    if (checkpoints) {
        cache_->checkpoint();
        batch.clear();
        batch.add(prompt[last], static_cast<llama_pos>(last), 0, true);
        decode("prompt");
        cached.push_back(prompt[last]);
    }
    for (llama_token t : prompt) common_sampler_accept(smpl.get(), t, false);
    // The last prompt token's logits are the last output of the last decoded batch.
    llama_token id_last = common_sampler_sample(smpl.get(), ctx_, -1);
    common_sampler_accept(smpl.get(), id_last, true);
    stats.prompt_ms = ms_since(t_prompt);

    // ---- generation ----------------------------------------------------------------------
    const auto t_gen = Clock::now();
    if (speculator_) speculator_->begin(cached);
    emit.push(id_last);
    llama_tokens draft;
    auto flush = [&]() -> bool {
        if (!on_step || (emit.pending_text.empty() && emit.pending_tokens.empty())) return true;
        const bool keep_going = on_step(emit.pending_text, emit.pending_tokens);
        emit.pending_text.clear();
        emit.pending_tokens.clear();
        return keep_going;
    };
    if (!flush()) {
        result.finish_reason = FinishReason::kCancelled;
        emit.done = true;
    }

    while (!emit.done) {
        if (cancel && cancel()) {
            result.finish_reason = FinishReason::kCancelled;
            break;
        }
        const auto n_past = static_cast<int32_t>(cached.size());  // position of id_last
        if (n_past + 1 >= n_ctx) {
            result.finish_reason = FinishReason::kLength;
            break;
        }
        // Draft: never past the context, the token budget, or the recurrent snapshots.
        draft.clear();
        if (speculator_) {
            // The user's n_max caps every speculator (n-gram ones have longer defaults of their
            // own): a verification batch must fit the context's output rows and micro-batch.
            int32_t budget = std::min({n_ctx - n_past - 2, speculator_->n_max(), spec_options.n_max});
            if (sampling.max_tokens >= 0) {
                budget = std::min(budget, sampling.max_tokens - static_cast<int32_t>(result.tokens.size()) - 1);
            }
            if (n_rs_seq_ > 0) budget = std::min(budget, static_cast<int32_t>(n_rs_seq_));
            speculator_->draft(n_past, id_last, budget, cached, draft);
        }
        // Verify [id_last, d1..dk] in one batch.
        batch.clear();
        batch.add(id_last, n_past, 0, true);
        for (size_t i = 0; i < draft.size(); ++i) batch.add(draft[i], n_past + 1 + static_cast<llama_pos>(i), 0, true);
        decode("verification batch");
        const std::vector<llama_token> ids = common_sampler_sample_and_accept_n(smpl.get(), ctx_, draft);
        const size_t n_accepted = ids.size() - 1;
        if (!draft.empty()) {
            speculator_->accept(static_cast<uint16_t>(n_accepted));
            stats.num_drafts += 1;
            stats.draft_n += static_cast<int32_t>(draft.size());
            stats.draft_n_accepted += static_cast<int32_t>(n_accepted);
            for (size_t i = 0; i < n_accepted && i < stats.accepted_per_pos.size(); ++i) stats.accepted_per_pos[i] += 1;
        }
        cached.push_back(id_last);
        cached.insert(cached.end(), ids.begin(), ids.end() - 1);
        if (n_accepted < draft.size()) {
            // Roll back the rejected tail: the recurrent layers use their snapshots (n_rs_seq).
            const auto keep = static_cast<llama_pos>(cached.size());
            if (!llama_memory_seq_rm(mem_tgt, 0, keep, -1) || (mem_dft && !llama_memory_seq_rm(mem_dft, 0, keep, -1))) {
                cache_->clear(mem_dft);
                throw DecodeError("could not roll back rejected draft tokens; the prompt cache was reset");
            }
        }
        id_last = ids.back();
        for (llama_token t : ids) emit.push(t);
        if (!flush()) {
            result.finish_reason = FinishReason::kCancelled;
            break;
        }
    }
    const std::string tail = emit.stream.flush();
    if (on_step && !tail.empty()) on_step(tail, {});
    result.text = emit.stream.text();
    stats.predicted_n = static_cast<int32_t>(result.tokens.size());
    stats.predicted_ms = ms_since(t_gen);
    return result;
}

}  // namespace llama_mtp
