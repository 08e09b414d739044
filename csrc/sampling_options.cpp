#include "sampling_options.h"

#include <cmath>

#include "errors.h"

namespace llama_mtp {

void validate_sampling(const SamplingOptions& s) {
    if (!(s.temperature >= 0.0f)) throw InvalidArgument("temperature must be >= 0");
    if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) throw InvalidArgument("top_p must be in (0, 1]");
    if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) throw InvalidArgument("min_p must be in [0, 1]");
    if (!(s.typical_p > 0.0f && s.typical_p <= 1.0f)) throw InvalidArgument("typical_p must be in (0, 1]");
    if (!(s.repeat_penalty > 0.0f)) throw InvalidArgument("repeat_penalty must be > 0");
    if (s.repeat_last_n < -1) throw InvalidArgument("repeat_last_n must be >= -1 (-1: the whole context)");
    if (!std::isfinite(s.presence_penalty) || !std::isfinite(s.frequency_penalty)) {
        throw InvalidArgument("presence_penalty and frequency_penalty must be finite");
    }
    if (s.max_tokens < -1) throw InvalidArgument("max_tokens must be >= 0 (or None for no limit)");
    if (s.logprobs < -1 || s.logprobs > kMaxLogprobs) {
        throw InvalidArgument("logprobs must be None or in [0, " + std::to_string(kMaxLogprobs) + "]");
    }
    for (const auto& stop : s.stop) {
        if (stop.empty()) throw InvalidArgument("a stop string must not be empty");
    }
    for (const auto& [token, bias] : s.logit_bias) {
        if (std::isnan(bias)) throw InvalidArgument("logit_bias values must be numbers (not NaN)");
        (void)token;
    }
    if (s.reasoning_budget_tokens < -1) throw InvalidArgument("reasoning_budget must be >= 0 (or None)");
    if (s.grammar_lazy && (s.grammar.empty() || s.grammar_triggers.empty())) {
        throw InvalidArgument("a lazy grammar needs a grammar and its triggers");
    }
}

common_sampler_ptr make_sampler(const SamplingOptions& s, const Model& model) {
    validate_sampling(s);
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
    ModelHandle handle = model.handle();
    if (s.ignore_eos) {
        const llama_vocab* vocab = llama_model_get_vocab(handle.get());
        for (llama_token t = 0; t < llama_vocab_n_tokens(vocab); ++t) {
            if (llama_vocab_is_eog(vocab, t)) p.logit_bias.push_back({t, -INFINITY});
        }
    }
    if (!s.grammar.empty()) {
        // A template's grammar gets the generation prompt first (common_grammar_needs_prefill);
        // a user's grammar constrains the reply from its first token.
        p.grammar = {s.grammar_from_template ? COMMON_GRAMMAR_TYPE_TOOL_CALLS : COMMON_GRAMMAR_TYPE_USER, s.grammar};
        p.grammar_lazy = s.grammar_lazy;
        p.grammar_triggers = s.grammar_triggers;
    }
    p.reasoning_budget_tokens = s.reasoning_budget_tokens;
    p.reasoning_budget_start = s.reasoning_budget_start;
    p.reasoning_budget_end = s.reasoning_budget_end;
    p.reasoning_budget_forced = s.reasoning_budget_forced;
    p.generation_prompt = s.generation_prompt;
    for (const auto& seq : {s.reasoning_budget_start, s.reasoning_budget_forced}) {
        for (llama_token t : seq) model.check_token(t);
    }
    for (const auto& seq : s.reasoning_budget_end) {
        for (llama_token t : seq) model.check_token(t);
    }
    common_sampler_ptr sampler;
    try {
        sampler.reset(common_sampler_init(handle.get(), p));
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("invalid sampling options: ") + e.what());
    }
    if (!sampler) throw InvalidArgument("invalid sampling options (the grammar could not be parsed)");
    return sampler;
}

}  // namespace llama_mtp
