#include "slot.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace llama_mtp {

Slot::Slot(llama_context* ctx, llama_seq_id id, bool recurrent) : id_(id), cache_(ctx, id, recurrent) {}

void Slot::start(std::shared_ptr<Request> request, common_sampler_ptr sampler, bool speculate, int32_t n_draft,
                 size_t n_reused, const llama_vocab* vocab) {
    request_ = std::move(request);
    sampler_ = std::move(sampler);
    speculate_ = speculate;
    n_draft_ = n_draft;
    vocab_ = vocab;
    state_ = State::kPrompt;
    done_ = false;
    result_ = GenerationResult{};
    pending_ = Chunk{};
    draft.clear();
    rows.clear();
    const auto& opts = request_->options();
    stream_ = std::make_unique<TextStream>(opts.sampling.stop);
    result_.stats.cache_n = static_cast<int32_t>(n_reused);
    result_.stats.prompt_n = static_cast<int32_t>(opts.prompt.size() - n_reused);
    result_.stats.accepted_per_position.assign(speculate ? static_cast<size_t>(n_draft) : 0, 0);
    result_.stats.draft_len_histogram.assign(speculate ? static_cast<size_t>(n_draft) + 1 : 0, 0);
    controller = DraftController(speculate ? n_draft : 0);
    // Recurrent state is checkpointed a few tokens before the end (a chat template re-renders the
    // tail of the previous turn differently: the next turn resumes there, as llama-server does)
    // and just before the last token (the same prompt again). Without a prompt cache to serve, or
    // for a model whose memory can be truncated anywhere, no checkpoint is needed.
    const size_t n = opts.prompt.size();
    checkpoints_ = opts.cache_prompt && cache_.recurrent();
    checkpoint_last_ = checkpoints_ ? n - 1 : n;
    checkpoint_early_ = checkpoints_ && checkpoint_last_ > n_reused + 4 ? checkpoint_last_ - 4 : 0;
    for (llama_token t : opts.prompt) common_sampler_accept(sampler_.get(), t, false);
    t_start = Clock::now();
}

void Slot::begin_generation(llama_token first) {
    state_ = State::kGenerating;
    t_first = Clock::now();
    result_.stats.prompt_ms = std::chrono::duration<double, std::milli>(t_first - t_start).count();
    id_last = first;
}

void Slot::emit(const std::vector<llama_token>& tokens, const std::vector<int32_t>& logprob_rows,
                llama_context* ctx) {
    const auto& sampling = request_->options().sampling;
    for (size_t i = 0; i < tokens.size() && !done_; ++i) {
        if (sampling.max_tokens >= 0 && static_cast<int32_t>(result_.tokens.size()) >= sampling.max_tokens) {
            result_.finish_reason = FinishReason::kLength;  // max_tokens == 0
            done_ = true;
            break;
        }
        const llama_token t = tokens[i];
        result_.tokens.push_back(t);
        pending_.tokens.push_back(t);
        if (sampling.logprobs >= 0 && i < logprob_rows.size()) {
            const float* logits = llama_get_logits_ith(ctx, logprob_rows[i]);
            if (logits != nullptr) {
                TokenLogprob lp = token_logprob(logits, llama_vocab_n_tokens(vocab_), t, sampling.logprobs);
                result_.logprobs.push_back(lp);
                if (request_->options().stream) pending_.logprobs.push_back(std::move(lp));
            }
        }
        if (!sampling.ignore_eos && llama_vocab_is_eog(vocab_, t)) {
            result_.finish_reason = FinishReason::kEos;
            done_ = true;
            break;
        }
        pending_.text += stream_->push(common_token_to_piece(vocab_, t, false));
        if (stream_->stopped()) {
            result_.finish_reason = FinishReason::kStop;
            result_.stop_reason = stream_->matched_stop();
            done_ = true;
            break;
        }
        if (sampling.max_tokens >= 0 && static_cast<int32_t>(result_.tokens.size()) >= sampling.max_tokens) {
            result_.finish_reason = FinishReason::kLength;
            done_ = true;
        }
    }
}

void Slot::flush_chunk() {
    if (!request_->options().stream) {
        pending_ = Chunk{};
        return;
    }
    if (pending_.text.empty() && pending_.tokens.empty()) return;
    request_->push(std::move(pending_));
    pending_ = Chunk{};
}

GenerationResult Slot::finish_result() {
    const std::string tail = stream_->flush();
    if (!tail.empty()) pending_.text += tail;
    flush_chunk();
    result_.text = stream_->text();
    result_.stats.predicted_n = static_cast<int32_t>(result_.tokens.size());
    if (state_ == State::kGenerating) {
        result_.stats.predicted_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_first).count();
    } else {
        result_.stats.prompt_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_start).count();
    }
    return std::move(result_);
}

void Slot::release() {
    request_.reset();
    sampler_.reset();
    stream_.reset();
    state_ = State::kIdle;
    draft.clear();
    rows.clear();
    result_ = GenerationResult{};
    pending_ = Chunk{};
    done_ = false;
}

TokenLogprob token_logprob(const float* logits, int32_t n_vocab, llama_token token, int32_t top) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n_vocab; ++i) max = std::max(max, logits[i]);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
    const float log_z = max + static_cast<float>(std::log(sum));
    TokenLogprob out;
    out.token = token;
    out.logprob = logits[token] - log_z;
    if (top > 0) {
        std::vector<int32_t> ids(static_cast<size_t>(n_vocab));
        std::iota(ids.begin(), ids.end(), 0);
        const auto k = static_cast<size_t>(std::min(top, n_vocab));
        std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                          [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
        out.top.reserve(k);
        for (size_t i = 0; i < k; ++i) out.top.emplace_back(ids[i], logits[ids[i]] - log_z);
    }
    return out;
}

}  // namespace llama_mtp
