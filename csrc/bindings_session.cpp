// Binding of the generation session (csrc/session.h): option/result structs, GIL release during
// generation, and the per-step hand-over to Python: a StepQueue (no GIL in the loop) or a
// callback that re-takes the GIL for each chunk.
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

#include <pybind11/functional.h>
#include <pybind11/stl.h>
#include <pybind11/typing.h>

#include "bindings.h"
#include "session.h"

namespace py = pybind11;

namespace llama_mtp {
namespace {

// A flag another thread (or the iterator's close()) sets to stop a running generation.
struct CancelToken {
    std::atomic<bool> cancelled{false};
};

// Each step's chunk handed from the decoding thread to a Python consumer without the GIL: the
// loop never waits behind a busy Python thread (a GIL hand-over can take a whole switch
// interval, 5 ms), and the consumer waits with the GIL released.
struct StepQueue {
    using Chunk = std::pair<std::string, std::vector<llama_token>>;
    using MaybeChunk = py::typing::Optional<py::typing::Tuple<py::str, py::typing::List<py::int_>>>;
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<Chunk> chunks;
    bool finished = false;

    void push(const std::string& text, const std::vector<llama_token>& tokens) {
        {
            std::lock_guard<std::mutex> lock(mutex);
            chunks.emplace_back(text, tokens);
        }
        ready.notify_one();
    }
    void finish() {
        {
            std::lock_guard<std::mutex> lock(mutex);
            finished = true;
        }
        ready.notify_all();
    }
    size_t pending() {
        std::lock_guard<std::mutex> lock(mutex);
        return chunks.size();
    }
    // The next chunk, or nothing once the generation has finished and every chunk was taken.
    // Waits in 50 ms slices with the GIL released, looking for Ctrl-C in between (held by the
    // caller on entry). Raises TimeoutError after `timeout` seconds when given (as queue.Queue:
    // a negative or NaN timeout is a ValueError, an infinite one waits without limit).
    MaybeChunk get(std::optional<double> timeout) {
        if (timeout && (std::isnan(*timeout) || *timeout < 0.0)) {
            throw py::value_error("timeout must be a non-negative number of seconds or None");
        }
        // Beyond ~a century the clock arithmetic would overflow: treat it as no limit.
        const bool bounded = timeout && *timeout < 3.0e9;
        const auto deadline = bounded ? std::chrono::steady_clock::now() +
                                            std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                std::chrono::duration<double>(*timeout))
                                      : std::chrono::steady_clock::time_point::max();
        while (true) {
            std::optional<Chunk> chunk;
            bool done = false;
            {
                py::gil_scoped_release release;
                std::unique_lock<std::mutex> lock(mutex);
                const auto slice = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
                ready.wait_until(lock, slice, [&] { return !chunks.empty() || finished; });
                if (!chunks.empty()) {
                    chunk = std::move(chunks.front());
                    chunks.pop_front();
                } else {
                    done = finished;
                }
            }
            // A chunk ends on a UTF-8 boundary; only a generation cut short can leave a partial one.
            if (chunk) {
                return py::reinterpret_steal<MaybeChunk>(
                    py::make_tuple(py::bytes(chunk->first).attr("decode")("utf-8", "replace"), chunk->second)
                        .release());
            }
            if (done) return py::reinterpret_borrow<MaybeChunk>(py::none());
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            if (std::chrono::steady_clock::now() >= deadline) {
                PyErr_SetString(PyExc_TimeoutError, "no generation step within the timeout");
                throw py::error_already_set();
            }
        }
    }
};

// Marks a StepQueue finished when the generation ends, however it ends.
struct FinishOnExit {
    StepQueue* queue;
    ~FinishOnExit() {
        if (queue) queue->finish();
    }
};

const char* finish_reason_name(FinishReason r) {
    switch (r) {
        case FinishReason::kStop: return "stop";
        case FinishReason::kEos: return "eos";
        case FinishReason::kCancelled: return "cancelled";
        default: return "length";
    }
}

}  // namespace

void bind_session(py::module_& m) {
    py::class_<ContextOptions>(m, "ContextOptions", "How a generation context is created (-c, -b, -ub, -t, -fa, -ctk, -ctv).")
        .def(py::init<>())
        .def_readwrite("n_ctx", &ContextOptions::n_ctx)
        .def_readwrite("n_batch", &ContextOptions::n_batch)
        .def_readwrite("n_ubatch", &ContextOptions::n_ubatch)
        .def_readwrite("n_threads", &ContextOptions::n_threads)
        .def_readwrite("n_threads_batch", &ContextOptions::n_threads_batch)
        .def_readwrite("flash_attn", &ContextOptions::flash_attn)
        .def_readwrite("cache_type_k", &ContextOptions::cache_type_k)
        .def_readwrite("cache_type_v", &ContextOptions::cache_type_v)
        .def_readwrite("offload_kqv", &ContextOptions::offload_kqv);

    py::class_<SpeculatorOptions>(m, "SpeculatorOptions", "Native speculator options (see llama_mtp.Speculator).")
        .def(py::init<>())
        .def_readwrite("types", &SpeculatorOptions::types)
        .def_readwrite("n_max", &SpeculatorOptions::n_max)
        .def_readwrite("n_min", &SpeculatorOptions::n_min)
        .def_readwrite("p_min", &SpeculatorOptions::p_min)
        .def_readwrite("draft_model_path", &SpeculatorOptions::draft_model_path)
        .def_readwrite("draft_gpu_layers", &SpeculatorOptions::draft_gpu_layers)
        .def_readwrite("draft_cache_type_k", &SpeculatorOptions::draft_cache_type_k)
        .def_readwrite("draft_cache_type_v", &SpeculatorOptions::draft_cache_type_v)
        .def_readwrite("ngram_size_n", &SpeculatorOptions::ngram_size_n)
        .def_readwrite("ngram_size_m", &SpeculatorOptions::ngram_size_m)
        .def_readwrite("ngram_min_hits", &SpeculatorOptions::ngram_min_hits);

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
        .def_readwrite("reasoning_budget_tokens", &SamplingOptions::reasoning_budget_tokens)
        .def_readwrite("reasoning_budget_start", &SamplingOptions::reasoning_budget_start)
        .def_readwrite("reasoning_budget_end", &SamplingOptions::reasoning_budget_end)
        .def_readwrite("reasoning_budget_forced", &SamplingOptions::reasoning_budget_forced)
        .def_readwrite("generation_prompt", &SamplingOptions::generation_prompt);

    py::class_<GenerationStats>(m, "GenerationStats", "Native timings of one generation (see llama_mtp.GenerationStats).")
        .def_readonly("prompt_n", &GenerationStats::prompt_n)
        .def_readonly("cache_n", &GenerationStats::cache_n)
        .def_readonly("prompt_ms", &GenerationStats::prompt_ms)
        .def_readonly("predicted_n", &GenerationStats::predicted_n)
        .def_readonly("predicted_ms", &GenerationStats::predicted_ms)
        .def_readonly("draft_n", &GenerationStats::draft_n)
        .def_readonly("draft_n_accepted", &GenerationStats::draft_n_accepted)
        .def_readonly("num_drafts", &GenerationStats::num_drafts)
        .def_readonly("accepted_per_pos", &GenerationStats::accepted_per_pos);

    py::class_<GenerationResult>(m, "GenerationResult", "Native result of one generation (see llama_mtp.GenerationOutput).")
        .def_property_readonly("text", [](const GenerationResult& r) {
            return py::bytes(r.text).attr("decode")("utf-8", "replace");
        })
        .def_readonly("tokens", &GenerationResult::tokens)
        .def_property_readonly("finish_reason",
                               [](const GenerationResult& r) { return finish_reason_name(r.finish_reason); })
        .def_readonly("stop_reason", &GenerationResult::stop_reason)
        .def_readonly("stats", &GenerationResult::stats);

    py::class_<CancelToken, std::shared_ptr<CancelToken>>(
        m, "CancelToken", "A flag that stops a running generation within one step: call cancel() from any thread.")
        .def(py::init<>())
        .def("cancel", [](CancelToken& t) { t.cancelled.store(true); })
        .def_property_readonly("cancelled", [](const CancelToken& t) { return t.cancelled.load(); });

    py::class_<StepQueue, std::shared_ptr<StepQueue>>(
        m, "StepQueue",
        "Chunks of a running generation, handed over without the GIL: pass it as Session.generate's "
        "on_step and call get() from another thread.")
        .def(py::init<>())
        .def("get", &StepQueue::get, py::arg("timeout") = std::nullopt,
             "The next (text, tokens) chunk, or None once the generation has finished and every chunk "
             "was taken. Waits with the GIL released; raises TimeoutError after `timeout` seconds "
             "(ValueError for a negative or NaN one; infinity waits without limit).")
        .def("finish", &StepQueue::finish, "Marks the generation finished (idempotent).")
        .def_property_readonly("pending", &StepQueue::pending, "Chunks produced and not yet taken.");

    py::class_<Session, std::shared_ptr<Session>>(
        m, "Session", "A generation context on a model; calls on one session are serialized.")
        .def(py::init<std::shared_ptr<Model>, const ContextOptions&>(), py::arg("model"), py::arg("options"))
        .def_property_readonly("n_ctx", &Session::n_ctx)
        .def("reset", &Session::reset, py::call_guard<py::gil_scoped_release>())
        .def(
            "generate",
            [](Session& self, const std::vector<llama_token>& prompt, const SamplingOptions& sampling,
               const SpeculatorOptions& speculator, bool cache_prompt, py::object on_step,
               std::optional<std::shared_ptr<CancelToken>> maybe_token, bool check_signals) {
                std::shared_ptr<CancelToken> token = maybe_token.value_or(nullptr);
                // Errors raised by Python code called back from the loop, re-raised afterwards.
                std::unique_ptr<py::error_already_set> python_error;
                StepCallback step;
                std::shared_ptr<StepQueue> steps;
                if (py::isinstance<StepQueue>(on_step)) {
                    steps = on_step.cast<std::shared_ptr<StepQueue>>();
                    step = [&steps](const std::string& text, const std::vector<llama_token>& tokens) {
                        steps->push(text, tokens);
                        return true;  // a consumer stops the loop with the CancelToken
                    };
                } else if (!on_step.is_none()) {
                    step = [&](const std::string& text, const std::vector<llama_token>& tokens) {
                        py::gil_scoped_acquire gil;
                        try {
                            py::object keep = on_step(py::bytes(text).attr("decode")("utf-8", "replace"), tokens);
                            return keep.is_none() || keep.cast<bool>();
                        } catch (py::error_already_set& e) {
                            python_error = std::make_unique<py::error_already_set>(std::move(e));
                            return false;
                        }
                    };
                }
                // Signals are looked at every 50 ms at most: taking the GIL every decoding step
                // would make the loop wait behind any busy Python thread.
                auto last_signal_check = std::chrono::steady_clock::now();
                CancelCheck cancel = [&]() {
                    if (token && token->cancelled.load()) return true;
                    if (!check_signals) return false;
                    const auto now = std::chrono::steady_clock::now();
                    if (now - last_signal_check < std::chrono::milliseconds(50)) return false;
                    last_signal_check = now;
                    py::gil_scoped_acquire gil;  // Ctrl-C reaches us as a pending signal
                    if (PyErr_CheckSignals() != 0) {
                        python_error = std::make_unique<py::error_already_set>();
                        return true;
                    }
                    return false;
                };
                GenerationResult result;
                {
                    FinishOnExit finish_steps{steps.get()};
                    py::gil_scoped_release release;
                    result = self.generate(prompt, sampling, speculator, cache_prompt, step, cancel);
                }
                if (python_error) throw std::move(*python_error);
                return result;
            },
            py::arg("prompt"), py::arg("sampling"), py::arg("speculator"), py::arg("cache_prompt") = true,
            py::arg("on_step") = py::none(), py::arg("cancel") = std::nullopt, py::arg("check_signals") = false);
}

}  // namespace llama_mtp
