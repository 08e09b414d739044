// Private bindings that let pytest drive C++ pieces with logic of their own, case by case, the
// way CTranslate2's tests drive its core (tests/test_core_units.py). Not public API: every name
// starts with an underscore and follows the C++ it wraps. Type conversion only, like every
// binding: bytes in and out where the C++ works on bytes, so a test can split UTF-8 anywhere.
//
// To test another piece (PromptCache, a batch planner, ...): bind a thin wrapper below with an
// underscore name, regenerate python/llama_mtp/_core.pyi (README, "Typing"), and write the cases
// in a tests/test_core_*.py file.
#include <deque>

#include <pybind11/stl.h>

#include "bindings.h"
#include "common.h"
#include "context_params.h"
#include "errors.h"
#include "gil.h"
#include "model.h"
#include "prompt_cache.h"
#include "text_stream.h"

namespace py = pybind11;

namespace llama_mtp {
namespace {

// csrc/prompt_cache.h on a real context of two sequences: feed() decodes tokens into a
// sequence and records them in its cache, as the engine does with a prompt chunk.
class PromptCacheProbe {
public:
    PromptCacheProbe(const Model& model, uint32_t n_ctx, size_t max_checkpoints) : handle_(model.handle()) {
        ContextOptions o;
        o.n_ctx = n_ctx;
        o.n_threads = 1;
        llama_context_params p = make_context_params(o, 0, 2, 2);
        ctx_ = llama_init_from_model(handle_.get(), p);
        if (ctx_ == nullptr) throw DecodeError("could not create a context");
        const bool recurrent = llama_model_is_recurrent(handle_.get()) || llama_model_is_hybrid(handle_.get());
        for (llama_seq_id s = 0; s < 2; ++s) caches_.emplace_back(ctx_, s, recurrent, max_checkpoints);
    }
    ~PromptCacheProbe() {
        caches_.clear();
        if (ctx_) llama_free(ctx_);
    }
    PromptCache& cache(llama_seq_id seq) {
        if (seq < 0 || seq > 1) throw InvalidArgument("seq must be 0 or 1");
        return caches_[static_cast<size_t>(seq)];
    }
    void feed(llama_seq_id seq, const std::vector<llama_token>& tokens) {
        auto& cached = cache(seq).tokens();
        common_batch batch(ctx_);
        for (size_t i = 0; i < tokens.size(); ++i) {
            batch.add(tokens[i], static_cast<llama_pos>(cached.size() + i), seq, i + 1 == tokens.size());
        }
        if (llama_process(ctx_, LLAMA_PROCESS_TYPE_DECODE, batch.get()) != 0) throw DecodeError("decode failed");
        cached.insert(cached.end(), tokens.begin(), tokens.end());
    }
    // Highest position the context's memory holds for seq (-1: none).
    llama_pos pos_max(llama_seq_id seq) { return llama_memory_seq_pos_max(llama_get_memory(ctx_), seq); }

private:
    ModelHandle handle_;
    llama_context* ctx_ = nullptr;
    std::deque<PromptCache> caches_;
};

}  // namespace

void bind_testing(py::module_& m) {
    py::class_<PromptCacheProbe>(m, "_PromptCacheProbe",
                                 "csrc/prompt_cache.h for tests: two sequences' caches on a real context.")
        .def(py::init<const Model&, uint32_t, size_t>(), py::arg("model"), py::arg("n_ctx"),
             py::arg("max_checkpoints") = 3, py::call_guard<GilRelease>())
        .def("feed", &PromptCacheProbe::feed, py::arg("seq"), py::arg("tokens"), py::call_guard<GilRelease>())
        .def("checkpoint", [](PromptCacheProbe& self, llama_seq_id seq) { self.cache(seq).checkpoint(); },
             py::arg("seq"))
        .def("reuse", [](PromptCacheProbe& self, llama_seq_id seq, const std::vector<llama_token>& prompt) {
                 return self.cache(seq).reuse(prompt, nullptr);
             }, py::arg("seq"), py::arg("prompt"))
        .def("common_prefix", [](PromptCacheProbe& self, llama_seq_id seq, const std::vector<llama_token>& prompt) {
                 return self.cache(seq).common_prefix(prompt);
             }, py::arg("seq"), py::arg("prompt"))
        .def("clear", [](PromptCacheProbe& self, llama_seq_id seq) { self.cache(seq).clear(nullptr); }, py::arg("seq"))
        .def("tokens", [](PromptCacheProbe& self, llama_seq_id seq) { return self.cache(seq).tokens(); }, py::arg("seq"))
        .def("recurrent", [](PromptCacheProbe& self) { return self.cache(0).recurrent(); })
        .def("pos_max", &PromptCacheProbe::pos_max, py::arg("seq"));

    py::class_<TextStream>(m, "_TextStream",
                           "csrc/text_stream.h for tests: token pieces in, text safe to release out.")
        .def(py::init<std::vector<std::string>>(), py::arg("stops"))
        .def(
            "push", [](TextStream& self, const py::bytes& piece) { return py::bytes(self.push(std::string(piece))); },
            py::arg("piece"))
        .def("flush", [](TextStream& self) { return py::bytes(self.flush()); })
        .def_property_readonly("stopped", &TextStream::stopped)
        .def_property_readonly("matched_stop",
                               [](const TextStream& self) { return py::bytes(self.matched_stop()); })
        .def_property_readonly("text", [](const TextStream& self) { return py::bytes(self.text()); });

    m.def("_utf8_complete_prefix",
          [](const py::bytes& text, size_t end) {
              const std::string bytes(text);
              if (end > bytes.size()) throw InvalidArgument("end is past the end of text");
              return utf8_complete_prefix(bytes, end);
          },
          py::arg("text"), py::arg("end"),
          "csrc/text_stream.h for tests: the length of text[:end] without a trailing incomplete character.");
}

}  // namespace llama_mtp
