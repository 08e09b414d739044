// Binding of the batching engine (csrc/engine.h): option/result structs, request handles, and
// waiting for a request's chunks or result with the GIL released (csrc/gil.h).
#include <chrono>
#include <cmath>
#include <optional>

#include <pybind11/stl.h>
#include <pybind11/typing.h>

#include "bindings.h"
#include "engine.h"
#include "gil.h"
#include "adaptive.h"
#include "context_params.h"
#include "sampling_options.h"
#include "speculator.h"

namespace py = pybind11;

namespace llama_mtp {
namespace {

using Clock = std::chrono::steady_clock;

const char* finish_reason_name(FinishReason r) {
    switch (r) {
        case FinishReason::kStop: return "stop";
        case FinishReason::kEos: return "eos";
        case FinishReason::kCancelled: return "cancelled";
        default: return "length";
    }
}

// A Python timeout (seconds or None) as a deadline; as queue.Queue, a negative or NaN timeout is
// a ValueError and an infinite one waits without limit.
Clock::time_point deadline_of(std::optional<double> timeout) {
    if (!timeout) return Clock::time_point::max();
    if (std::isnan(*timeout) || *timeout < 0.0) {
        throw py::value_error("timeout must be a non-negative number of seconds or None");
    }
    if (*timeout >= 3.0e9) return Clock::time_point::max();  // beyond ~a century: no limit
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*timeout));
}

py::str decode_utf8(const std::string& text) {
    return py::reinterpret_steal<py::str>(PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace"));
}

using ChunkTuple = py::typing::Tuple<py::str, py::typing::List<py::int_>, py::typing::List<TokenLogprob>>;
using MaybeChunk = py::typing::Optional<ChunkTuple>;

// The next chunk of a streamed request, or None once it has ended and every chunk was taken.
MaybeChunk next_chunk(Request& request, std::optional<double> timeout) {
    const auto deadline = deadline_of(timeout);
    Chunk chunk;
    bool ended = false;
    const bool ready = wait_without_gil(
        [&](Clock::time_point slice) { return request.next(chunk, ended, slice) == Request::Wait::kReady; },
        deadline);
    if (!ready) {
        PyErr_SetString(PyExc_TimeoutError, "no generation step within the timeout");
        throw py::error_already_set();
    }
    if (ended) return py::reinterpret_borrow<MaybeChunk>(py::none());
    return py::reinterpret_steal<MaybeChunk>(
        py::make_tuple(decode_utf8(chunk.text), py::cast(chunk.tokens), py::cast(chunk.logprobs)).release());
}

// Waits for the request's result. Ctrl-C cancels the request, waits for it to end, and raises.
GenerationResult wait_result(Request& request, std::optional<double> timeout) {
    const auto deadline = deadline_of(timeout);
    bool ready = false;
    try {
        ready = wait_without_gil([&](Clock::time_point slice) { return request.wait(slice) == Request::Wait::kReady; },
                                 deadline);
    } catch (py::error_already_set&) {
        request.cancel();  // KeyboardInterrupt: stop the request within one step, then re-raise
        GilRelease release;
        request.wait(Clock::time_point::max());
        throw;
    }
    if (!ready) {
        PyErr_SetString(PyExc_TimeoutError, "the request did not finish within the timeout");
        throw py::error_already_set();
    }
    return request.take_result();
}

// What every cost table binds for the controller's tests: measurements by size, and the clock.
template <typename Table>
py::class_<Table> bind_cost_table(py::class_<Table> cls, const char* size) {
    cls.def(py::init<>())
        .def("add", &Table::add, py::arg(size), py::arg("seconds"))
        .def("tick", &Table::tick)
        .def("samples", &Table::samples, py::arg(size));
    return cls;
}

}  // namespace

void bind_engine(py::module_& m) {
    py::class_<ContextOptions>(m, "ContextOptions",
                               "How the engine's context is created (-c, -b, -ub, -t, -tb, -fa, -ctk, -ctv, -nkvo, -kvu).")
        .def(py::init<>())
        .def_readwrite("n_ctx", &ContextOptions::n_ctx)
        .def_readwrite("n_batch", &ContextOptions::n_batch)
        .def_readwrite("n_ubatch", &ContextOptions::n_ubatch)
        .def_readwrite("n_threads", &ContextOptions::n_threads)
        .def_readwrite("n_threads_batch", &ContextOptions::n_threads_batch)
        .def_readwrite("flash_attn", &ContextOptions::flash_attn)
        .def_readwrite("cache_type_k", &ContextOptions::cache_type_k)
        .def_readwrite("cache_type_v", &ContextOptions::cache_type_v)
        .def_readwrite("offload_kqv", &ContextOptions::offload_kqv)
        .def_readwrite("kv_unified", &ContextOptions::kv_unified);

    py::class_<SpeculatorOptions>(m, "SpeculatorOptions", "Native speculator options (see llama_mtp.Speculator).")
        .def(py::init<>())
        .def_readwrite("type", &SpeculatorOptions::type)
        .def_readwrite("n_max", &SpeculatorOptions::n_max)
        .def_readwrite("n_min", &SpeculatorOptions::n_min)
        .def_readwrite("p_min", &SpeculatorOptions::p_min)
        .def_readwrite("model_path", &SpeculatorOptions::model_path)
        .def_readwrite("gpu_layers", &SpeculatorOptions::gpu_layers)
        .def_readwrite("devices", &SpeculatorOptions::devices)
        .def_readwrite("cache_type_k", &SpeculatorOptions::cache_type_k)
        .def_readwrite("cache_type_v", &SpeculatorOptions::cache_type_v)
        .def_readwrite("override_tensor", &SpeculatorOptions::override_tensor)
        .def_readwrite("cpu_moe", &SpeculatorOptions::cpu_moe)
        .def_readwrite("n_cpu_moe", &SpeculatorOptions::n_cpu_moe)
        .def_readwrite("ngram_size_n", &SpeculatorOptions::ngram_size_n)
        .def_readwrite("ngram_size_m", &SpeculatorOptions::ngram_size_m)
        .def_readwrite("ngram_min_hits", &SpeculatorOptions::ngram_min_hits)
        .def_readwrite("adaptive", &SpeculatorOptions::adaptive);

    py::class_<SamplingOptions>(m, "SamplingOptions", "Native sampling options (see llama_mtp.SamplingParams).")
        .def(py::init<>())
        .def_readwrite("temperature", &SamplingOptions::temperature)
        .def_readwrite("top_k", &SamplingOptions::top_k)
        .def_readwrite("top_p", &SamplingOptions::top_p)
        .def_readwrite("min_p", &SamplingOptions::min_p)
        .def_readwrite("typical_p", &SamplingOptions::typical_p)
        .def_readwrite("repeat_penalty", &SamplingOptions::repeat_penalty)
        .def_readwrite("repeat_last_n", &SamplingOptions::repeat_last_n)
        .def_readwrite("presence_penalty", &SamplingOptions::presence_penalty)
        .def_readwrite("frequency_penalty", &SamplingOptions::frequency_penalty)
        .def_readwrite("seed", &SamplingOptions::seed)
        .def_readwrite("max_tokens", &SamplingOptions::max_tokens)
        .def_readwrite("stop", &SamplingOptions::stop)
        .def_readwrite("logit_bias", &SamplingOptions::logit_bias)
        .def_readwrite("grammar", &SamplingOptions::grammar)
        .def_readwrite("ignore_eos", &SamplingOptions::ignore_eos)
        .def_readwrite("logprobs", &SamplingOptions::logprobs)
        .def_readwrite("reasoning_budget_tokens", &SamplingOptions::reasoning_budget_tokens)
        .def_readwrite("reasoning_budget_start", &SamplingOptions::reasoning_budget_start)
        .def_readwrite("reasoning_budget_end", &SamplingOptions::reasoning_budget_end)
        .def_readwrite("reasoning_budget_forced", &SamplingOptions::reasoning_budget_forced)
        .def_readwrite("generation_prompt", &SamplingOptions::generation_prompt);
    m.def("validate_sampling", &validate_sampling, py::arg("options"),
          "Raise ValueError naming the first invalid sampling value.");
    m.def("validate_speculator", &validate_speculator, py::arg("options"),
          "Raise ValueError (FileNotFoundError for a missing model file) for invalid speculator options.");
    m.def("speculator_types", &speculator_types, "Speculator types llama-mtp runs (llama.cpp's names).");
    m.def(
        "validate_context",
        [](const ContextOptions& options, uint32_t n_parallel) {
            make_context_params(options, 0, n_parallel, n_parallel);
        },
        py::arg("options"), py::arg("n_parallel"), "Raise ValueError for invalid context options.");

    py::class_<TokenLogprob>(m, "TokenLogprob", "Native log-probability of one token (see llama_mtp.TokenLogprob).")
        .def_readonly("token", &TokenLogprob::token)
        .def_readonly("logprob", &TokenLogprob::logprob)
        .def_readonly("top", &TokenLogprob::top);

    py::class_<GenerationStats>(m, "GenerationStats", "Native timings of one generation (see llama_mtp.GenerationStats).")
        .def_readonly("prompt_n", &GenerationStats::prompt_n)
        .def_readonly("cache_n", &GenerationStats::cache_n)
        .def_readonly("prompt_ms", &GenerationStats::prompt_ms)
        .def_readonly("predicted_n", &GenerationStats::predicted_n)
        .def_readonly("predicted_ms", &GenerationStats::predicted_ms)
        .def_readonly("draft_n", &GenerationStats::draft_n)
        .def_readonly("draft_n_accepted", &GenerationStats::draft_n_accepted)
        .def_readonly("num_drafts", &GenerationStats::num_drafts)
        .def_readonly("accepted_per_position", &GenerationStats::accepted_per_position)
        .def_readonly("draft_len_histogram", &GenerationStats::draft_len_histogram);

    py::class_<GenerationResult>(m, "GenerationResult", "Native result of one generation (see llama_mtp.GenerationOutput).")
        .def_property_readonly("text", [](const GenerationResult& r) { return decode_utf8(r.text); })
        .def_readonly("tokens", &GenerationResult::tokens)
        .def_property_readonly("finish_reason",
                               [](const GenerationResult& r) { return finish_reason_name(r.finish_reason); })
        .def_readonly("stop_reason", &GenerationResult::stop_reason)
        .def_readonly("logprobs", &GenerationResult::logprobs)
        .def_readonly("stats", &GenerationResult::stats);

    py::class_<CancelToken, std::shared_ptr<CancelToken>>(
        m, "CancelToken", "A flag that stops a running generation within one step: call cancel() from any thread.")
        .def(py::init<>())
        .def("cancel", &CancelToken::cancel)
        .def_property_readonly("cancelled", &CancelToken::cancelled);

    py::class_<Request, std::shared_ptr<Request>>(
        m, "Request", "A submitted request: read its chunks (streams) or wait for its result.")
        .def("next_chunk", &next_chunk, py::arg("timeout") = std::nullopt,
             "The next (text, tokens, logprobs) chunk of a streamed request, or None once it has ended and "
             "every chunk was taken. Waits with the GIL released; raises TimeoutError after `timeout` "
             "seconds (ValueError for a negative or NaN one; infinity waits without limit).")
        .def("result", &wait_result, py::arg("timeout") = std::nullopt,
             "Waits for the request to end and returns its result (raises its error). Ctrl-C cancels "
             "the request and raises KeyboardInterrupt.")
        .def("cancel", &Request::cancel, "Stop the request within one engine step.")
        .def_property_readonly("done", &Request::done)
        .def_property_readonly("pending", &Request::pending, "Chunks produced and not yet taken.");

    py::class_<EngineOptions>(m, "EngineOptions", "Slots, queue and speculator of an engine.")
        .def(py::init<>())
        .def_readwrite("n_parallel", &EngineOptions::n_parallel)
        .def_readwrite("max_queue", &EngineOptions::max_queue)
        .def_readwrite("speculator", &EngineOptions::speculator)
        .def_readwrite("warmup", &EngineOptions::warmup);

    py::class_<EngineMetrics>(m, "EngineMetrics", "Native engine counters (see llama_mtp.EngineMetrics).")
        .def_readonly("n_parallel", &EngineMetrics::n_parallel)
        .def_readonly("requests_processing", &EngineMetrics::requests_processing)
        .def_readonly("requests_deferred", &EngineMetrics::requests_deferred)
        .def_readonly("kv_cache_tokens", &EngineMetrics::kv_cache_tokens)
        .def_readonly("kv_cache_usage_ratio", &EngineMetrics::kv_cache_usage_ratio)
        .def_readonly("prompt_tokens_total", &EngineMetrics::prompt_tokens_total)
        .def_readonly("prompt_seconds_total", &EngineMetrics::prompt_seconds_total)
        .def_readonly("tokens_predicted_total", &EngineMetrics::tokens_predicted_total)
        .def_readonly("tokens_predicted_seconds_total", &EngineMetrics::tokens_predicted_seconds_total)
        .def_readonly("n_decode_total", &EngineMetrics::n_decode_total)
        .def_readonly("n_busy_slots_total", &EngineMetrics::n_busy_slots_total)
        .def_readonly("requests_finished_total", &EngineMetrics::requests_finished_total)
        .def_readonly("decode_seconds_total", &EngineMetrics::decode_seconds_total)
        .def_readonly("draft_seconds_total", &EngineMetrics::draft_seconds_total)
        .def_readonly("n_draft_passes_total", &EngineMetrics::n_draft_passes_total)
        .def_readonly("spec_decode_num_drafts", &EngineMetrics::spec_decode_num_drafts)
        .def_readonly("spec_decode_num_draft_tokens", &EngineMetrics::spec_decode_num_draft_tokens)
        .def_readonly("spec_decode_num_accepted_tokens", &EngineMetrics::spec_decode_num_accepted_tokens)
        .def_readonly("spec_decode_num_accepted_tokens_per_pos", &EngineMetrics::spec_decode_num_accepted_tokens_per_pos);

    py::class_<Engine, std::shared_ptr<Engine>>(
        m, "Engine", "Sequence slots in one context and the scheduler thread that batches their requests.")
        .def(py::init([](std::shared_ptr<Model> model, const ContextOptions& context, const EngineOptions& options) {
                 GilRelease release;
                 return std::shared_ptr<Engine>(new Engine(std::move(model), context, options), DeleteWithoutGil{});
             }),
             py::arg("model"), py::arg("context"), py::arg("options"))
        .def(
            "submit",
            [](Engine& self, std::vector<llama_token> prompt, const SamplingOptions& sampling,
               const SpeculatorOptions& speculator, bool cache_prompt, bool stream,
               std::optional<std::shared_ptr<CancelToken>> cancel) {
                RequestOptions options;
                options.prompt = std::move(prompt);
                options.sampling = sampling;
                options.speculator = speculator;
                options.cache_prompt = cache_prompt;
                options.stream = stream;
                options.cancel = cancel.value_or(nullptr);
                GilRelease release;  // the sampler (a grammar) may take a while to build
                return self.submit(std::move(options));
            },
            py::arg("prompt"), py::arg("sampling"), py::arg("speculator"), py::arg("cache_prompt") = true,
            py::arg("stream") = false, py::arg("cancel") = std::nullopt,
            "Validate and queue a request; raises before any work for bad input or a full queue.")
        .def(
            "close", [](Engine& self) {
                GilRelease release;
                self.close();
            },
            "Cancel every request (they raise ModelClosedError) and join the scheduler thread.")
        .def_property_readonly("closed", &Engine::closed)
        .def("reset_cache", &Engine::reset_cache, "Forget every slot's cached prompt.")
        .def("metrics", &Engine::metrics)
        .def_property_readonly("n_parallel", &Engine::n_parallel)
        .def_property_readonly("n_ctx", &Engine::n_ctx)
        .def_property_readonly("n_ctx_seq", &Engine::n_ctx_seq);

    // The adaptive draft-length controller's decisions, for its unit tests (csrc/adaptive.h):
    // step_seconds[r] is the time of a step of r rows.
    m.def("_expected_tokens", &expected_tokens, py::arg("p"), py::arg("k"));
    m.def(
        "_best_draft_length",
        [](const std::vector<double>& p, const std::vector<double>& step_seconds, double draft_seconds,
           int other_rows, int n_max) {
            return best_draft_length(
                p, [&](int rows) { return rows < static_cast<int>(step_seconds.size()) ? step_seconds[static_cast<size_t>(rows)] : 0.0; },
                draft_seconds, other_rows, n_max);
        },
        py::arg("p"), py::arg("step_seconds"), py::arg("draft_seconds"), py::arg("other_rows"), py::arg("n_max"));
    m.def(
        "_best_draft_depth",
        [](const std::vector<double>& p, const std::vector<double>& step_seconds,
           const std::vector<double>& draft_seconds, int max_depth, std::optional<double> plain_step_seconds) {
            auto at = [](const std::vector<double>& v, int i) {
                return i >= 0 && i < static_cast<int>(v.size()) ? v[static_cast<size_t>(i)] : 0.0;
            };
            return best_draft_depth(draft_depth_rates(p, [&](int rows) { return at(step_seconds, rows); },
                                                      [&](int d) { return at(draft_seconds, d); },
                                                      plain_step_seconds.value_or(at(step_seconds, 1)), max_depth));
        },
        py::arg("p"), py::arg("step_seconds"), py::arg("draft_seconds"), py::arg("max_depth"),
        py::arg("plain_step_seconds") = py::none());
    m.def(
        "_acceptance_after",
        [](int n_max, double prior, double weight, const std::vector<std::pair<int, int>>& steps) {
            AcceptanceEstimate e(n_max, prior, weight);
            for (const auto& [drafted, accepted] : steps) e.update(drafted, accepted);
            return e.p();
        },
        py::arg("n_max"), py::arg("prior"), py::arg("weight"), py::arg("steps"));
    auto step_costs = bind_cost_table(py::class_<StepCosts>(m, "_StepCosts"), "rows");
    step_costs.def("seconds", &StepCosts::seconds, py::arg("rows"))
        .def("reference", &StepCosts::reference)
        .def("ratio", &StepCosts::ratio, py::arg("rows"), py::arg("ref"))
        .def_property_readonly_static("window", [](const py::object&) { return CostTable::kWindow; })
        .def_property_readonly_static("stale_after", [](const py::object&) { return CostTable::kStale; })
        .def_property_readonly_static("pair_ticks", [](const py::object&) { return CostTable::kPairTicks; })
        .def_property_readonly_static("recent_ticks", [](const py::object&) { return CostTable::kRecentTicks; });
    bind_cost_table(py::class_<DraftCosts>(m, "_DraftCosts"), "depth")
        .def("seconds", &DraftCosts::seconds, py::arg("depth"));

    // One sequence's controller with fixed costs (step_seconds[r], draft_seconds[d]), for tests
    // that replay a text through it; each cost as if measured `measurements` times (default:
    // often enough to be trusted).
    py::class_<DraftController>(m, "_DraftController")
        .def(py::init<int>(), py::arg("n_max"))
        .def(
            "choose",
            [](DraftController& c, const std::vector<double>& step_seconds, const std::vector<double>& draft_seconds,
               int depth, int other_rows, std::optional<int> measurements) {
                // the whole step as the step, a following too small to count (each row count's
                // followed steps measured as often)
                StepCosts steps, follow;
                for (int i = 0; i < measurements.value_or(DraftController::kTrustedSamples); ++i) {
                    for (size_t r = 1; r < step_seconds.size(); ++r) {
                        steps.add(static_cast<int>(r), step_seconds[r]);
                        follow.add(static_cast<int>(r), 1e-12);
                    }
                }
                DraftCosts drafts;
                for (size_t d = 1; d < draft_seconds.size(); ++d) drafts.add(static_cast<int>(d), draft_seconds[d]);
                const DraftController::Choice choice = c.choose(FollowedSteps(steps, follow), drafts, depth, other_rows);
                return std::make_pair(choice.length, choice.probe);
            },
            py::arg("step_seconds"), py::arg("draft_seconds"), py::arg("depth"), py::arg("other_rows"),
            py::arg("measurements") = py::none())
        .def("verified", &DraftController::verified, py::arg("drafted"), py::arg("accepted"))
        .def("start_probe", &DraftController::start_probe, py::arg("draft"))
        .def("observe", &DraftController::observe, py::arg("token"))
        .def_property_readonly("probing", &DraftController::probing)
        .def_property_readonly_static("trusted_after", [](const py::object&) { return DraftController::kTrustedSamples; })
        .def_property_readonly_static("leave_margin", [](const py::object&) { return DraftController::kLeaveMargin; })
        .def_property_readonly("acceptance", [](const DraftController& c) { return c.acceptance().p(); });

    m.def("begin_shutdown", &begin_shutdown,
          "Called by llama_mtp's exit hook: from now on, threads waiting in native code never re-take "
          "the GIL (they park until the process ends).");
    note_main_thread();
}

}  // namespace llama_mtp
