#include "speculator.h"

#include <algorithm>
#include <cstdio>

#include "context_params.h"
#include "errors.h"
#include "gguf_file.h"  // FileMissing
#include "log_bridge.h"
#include "placement.h"

namespace llama_mtp {
namespace {

bool has_type(const std::vector<common_speculative_type>& types, common_speculative_type t) {
    return std::find(types.begin(), types.end(), t) != types.end();
}

std::vector<common_speculative_type> parse_types(const std::string& name) {
    try {
        return common_speculative_types_from_names({name});
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("unknown speculator type: ") + e.what() + " (known: " +
                              common_speculative_all_types_str() + ")");
    }
}

}  // namespace

std::vector<std::string> speculator_types() {
    // llama.cpp's types that need nothing llama-mtp lacks (eagle3 / dflash / dspark need their
    // own draft heads, ngram-cache a cache file).
    return {"draft-mtp", "draft-simple", "ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod"};
}

void validate_speculator(const SpeculatorOptions& o) {
    if (!o.enabled()) return;
    const auto known = speculator_types();
    if (std::find(known.begin(), known.end(), o.type) == known.end()) {
        std::string list = "none";
        for (const auto& k : known) list += ", " + k;
        throw InvalidArgument("unknown speculator type '" + o.type + "'; known: " + list);
    }
    if (o.n_max < 1 || o.n_max > 64) throw InvalidArgument("speculator n_max must be in [1, 64]");
    if (o.n_min < 0 || o.n_min > o.n_max) throw InvalidArgument("speculator n_min must be in [0, n_max]");
    if (!(o.p_min >= 0.0f && o.p_min <= 1.0f)) throw InvalidArgument("speculator p_min must be in [0, 1]");
    if (o.type == "draft-simple" && o.model_path.empty()) {
        throw InvalidArgument("draft-simple needs a draft model: Speculator.draft_model(path)");
    }
    if (!o.model_path.empty()) {
        std::FILE* f = std::fopen(o.model_path.c_str(), "rb");
        if (f == nullptr) throw FileMissing("No such draft model file: '" + o.model_path + "'");
        std::fclose(f);
    }
    cache_type_from_name(o.cache_type_k);
    cache_type_from_name(o.cache_type_v);
    validate_tensor_placement(o.tensor_placement());
    if (o.ngram_size_n < 1 || o.ngram_size_m < 1 || o.ngram_min_hits < 1) {
        throw InvalidArgument("n-gram sizes and min_hits must be >= 1");
    }
}

namespace {

// A separately loaded draft model (draft-simple's, or an MTP sidecar), placed by the speculator's
// own devices, GPU layers and tensor overrides.
llama_model* load_draft_model(const SpeculatorOptions& options, const Placement* placement, bool load_mtp,
                              const char* what) {
    llama_model_params mp = llama_model_default_params();
    std::vector<ggml_backend_dev_t> devices;  // referenced by mp until the load returns
    if (placement) placement->apply_draft(mp, options.devices, devices);
    mp.n_gpu_layers = options.gpu_layers;
    const TensorOverrides overrides(options.tensor_placement(),
                                    placement ? placement->devices() : std::vector<ggml_backend_dev_t>{});
    overrides.apply(mp);
    mp.load_mtp = load_mtp;
    clear_thread_errors();
    llama_model* model = llama_model_load_from_file(options.model_path.c_str(), mp);
    if (model == nullptr) {
        throw ModelLoadError(std::string("could not load ") + what + " '" + options.model_path + "': " +
                             take_thread_errors());
    }
    return model;
}

}  // namespace

Speculator::Speculator(const SpeculatorOptions& options, llama_model* model_tgt, bool mtp_loaded,
                       llama_context* ctx_tgt, const llama_context_params& cp_tgt, uint32_t n_seq,
                       const Placement* placement)
    : options_(options), n_seq_(n_seq), drafted_(n_seq, false), dft_checkpoints_(n_seq) {
    validate_speculator(options);
    const auto types = parse_types(options.type);
    const bool want_mtp = has_type(types, COMMON_SPECULATIVE_TYPE_DRAFT_MTP);
    const bool want_draft = has_type(types, COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE);

    llama_context_params cd = cp_tgt;
    cd.n_rs_seq = 0;
    // MTP drafts one token per sequence per step
    cd.n_outputs_max = n_seq;
    cd.n_outputs_max_per_seq = 1;
    cd.ctx_other = ctx_tgt;
    cd.n_ctx = llama_n_ctx(ctx_tgt);

    if (want_mtp && !options.model_path.empty()) {
        // The MTP head shipped as a separate GGUF (`mtp-*.gguf`): load it as its own model and run
        // its MTP context next to the target.
        model_dft_ = load_draft_model(options, placement, /*load_mtp=*/true, "the MTP sidecar");
        if (llama_model_n_layer_nextn(model_dft_) != 1 ||
            llama_model_n_embd(model_dft_) != llama_model_n_embd_out(model_tgt)) {
            llama_model_free(model_dft_);
            model_dft_ = nullptr;
            throw MTPUnavailableError("'" + options.model_path + "' is not an MTP head for this model "
                                      "(it needs exactly one nextn block and the target's hidden size)");
        }
        cd.ctx_type = LLAMA_CONTEXT_TYPE_MTP;
        ctx_dft_ = llama_init_from_model(model_dft_, cd);
        if (ctx_dft_ == nullptr) {
            llama_model_free(model_dft_);
            model_dft_ = nullptr;
            throw MTPUnavailableError("llama.cpp could not create the MTP context: " + take_thread_errors());
        }
    } else if (want_mtp) {
        const int32_t n_nextn = llama_model_n_layer_nextn(model_tgt);
        if (n_nextn == 0) {
            throw MTPUnavailableError(
                "this model has no MTP head: the GGUF has no '<arch>.nextn_predict_layers' key and no "
                "blk.N.nextn.* tensors. Use a GGUF converted with the MTP weights (a recent "
                "convert_hf_to_gguf.py keeps the checkpoint's mtp.* tensors), or Speculator.none().");
        }
        if (n_nextn != 1) {
            throw MTPUnavailableError("this model declares " + std::to_string(n_nextn) +
                                      " MTP blocks; llama.cpp's qwen35 MTP supports exactly 1");
        }
        if (!mtp_loaded) {
            throw MTPUnavailableError("the MTP head was not loaded: open the model with load_mtp=True "
                                      "(or load_mtp=None, the default)");
        }
        cd.ctx_type = LLAMA_CONTEXT_TYPE_MTP;
        clear_thread_errors();
        ctx_dft_ = llama_init_from_model(model_tgt, cd);
        if (ctx_dft_ == nullptr) {
            throw MTPUnavailableError("llama.cpp could not create the MTP context: " + take_thread_errors());
        }
    } else if (want_draft) {
        if (options.model_path.empty()) {
            throw InvalidArgument("draft-simple needs a draft model: Speculator.draft_model(path, ...)");
        }
        model_dft_ = load_draft_model(options, placement, /*load_mtp=*/false, "the draft model");
        dft_recurrent_ = llama_model_is_recurrent(model_dft_) || llama_model_is_hybrid(model_dft_);
        cd.ctx_type = LLAMA_CONTEXT_TYPE_DEFAULT;
        cd.ctx_other = nullptr;
        // A recurrent draft model rolls back the verification batch it mirrors with snapshots.
        cd.n_rs_seq = dft_recurrent_ ? static_cast<uint32_t>(options.n_max) : 0;
        cd.n_outputs_max = n_seq * static_cast<uint32_t>(options.n_max + 1);
        cd.n_outputs_max_per_seq = static_cast<uint32_t>(options.n_max + 1);
        cd.type_k = cache_type_from_name(options.cache_type_k);
        cd.type_v = cache_type_from_name(options.cache_type_v);
        ctx_dft_ = llama_init_from_model(model_dft_, cd);
        if (ctx_dft_ == nullptr) {
            llama_model_free(model_dft_);
            model_dft_ = nullptr;
            throw ModelLoadError("could not create the draft context: " + take_thread_errors());
        }
    }

    common_params_speculative params;
    params.types = types;
    params.draft.n_max = options.n_max;
    params.draft.n_min = options.n_min;
    params.draft.p_min = options.p_min;
    params.draft.ctx_tgt = ctx_tgt;
    params.draft.ctx_dft = ctx_dft_;
    params.draft.n_gpu_layers = options.gpu_layers;
    for (auto* ngram : {&params.ngram_simple, &params.ngram_map_k, &params.ngram_map_k4v}) {
        ngram->size_n = static_cast<uint16_t>(options.ngram_size_n);
        ngram->size_m = static_cast<uint16_t>(options.ngram_size_m);
        ngram->min_hits = static_cast<uint16_t>(options.ngram_min_hits);
    }
    params_ = params;
    try {
        spec_ = common_speculative_init(params, n_seq);
    } catch (const std::exception& e) {
        if (ctx_dft_) llama_free(ctx_dft_);
        if (model_dft_) llama_model_free(model_dft_);
        throw InvalidArgument(std::string("speculator setup failed: ") + e.what());
    }
    if (spec_ == nullptr) {
        if (ctx_dft_) llama_free(ctx_dft_);
        if (model_dft_) llama_model_free(model_dft_);
        throw InvalidArgument("llama.cpp created no speculator for these options");
    }
    n_max_ = common_speculative_n_max(spec_);
}

Speculator::~Speculator() {
    if (spec_) common_speculative_free(spec_);
    if (ctx_dft_) llama_free(ctx_dft_);
    if (model_dft_) llama_model_free(model_dft_);
}

void Speculator::set_depth(int32_t depth) {
    depth = std::max(1, std::min(depth, options_.n_max));
    if (depth == n_max_) return;
    common_params_speculative params = params_;
    params.draft.n_max = depth;
    common_speculative* next = nullptr;
    try {
        next = common_speculative_init(params, n_seq_);
    } catch (const std::exception&) {
        next = nullptr;
    }
    if (next == nullptr) return;  // keep the current one
    common_speculative_free(spec_);
    spec_ = next;
    n_max_ = common_speculative_n_max(spec_);
    std::fill(drafted_.begin(), drafted_.end(), false);
}

bool Speculator::serves(const SpeculatorOptions& w) const {
    const SpeculatorOptions& o = options_;
    return w.type == o.type && w.adaptive == o.adaptive && w.n_max <= o.n_max && w.model_path == o.model_path &&
           w.gpu_layers == o.gpu_layers && w.devices == o.devices && w.cache_type_k == o.cache_type_k &&
           w.cache_type_v == o.cache_type_v &&
           w.ngram_size_n == o.ngram_size_n && w.ngram_size_m == o.ngram_size_m &&
           w.ngram_min_hits == o.ngram_min_hits && w.override_tensor == o.override_tensor &&
           w.cpu_moe == o.cpu_moe && w.n_cpu_moe == o.n_cpu_moe && w.n_min == o.n_min && w.p_min == o.p_min;
}

bool Speculator::process(const common_batch& batch) { return common_speculative_process(spec_, batch); }

void Speculator::begin(llama_seq_id seq, const llama_tokens& tokens) {
    drafted_[static_cast<size_t>(seq)] = false;
    common_speculative_begin(spec_, seq, tokens);
}

void Speculator::draft(std::vector<DraftJob>& jobs) {
    bool any = false;
    for (auto& job : jobs) {
        job.out->clear();
        if (job.n_max <= 0) continue;  // 0 means "no limit" to common_speculative: never pass it
        any = true;
        // A recurrent draft model decodes its draft one token at a time, which its snapshots
        // cannot undo: save its recurrent state before drafting and put it back afterwards.
        auto& checkpoint = dft_checkpoints_[static_cast<size_t>(job.seq)];
        checkpoint.clear();
        if (dft_recurrent_) {
            const size_t size = llama_state_seq_get_size_ext(ctx_dft_, job.seq, LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY);
            checkpoint.resize(size);
            if (llama_state_seq_get_data_ext(ctx_dft_, checkpoint.data(), size, job.seq,
                                             LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY) == 0) {
                checkpoint.clear();
            }
        }
        auto& dp = common_speculative_get_draft_params(spec_, job.seq);
        dp.drafting = true;
        dp.n_max = job.n_max;
        dp.pos0 = job.pos0;
        dp.id_last = job.id_last;
        dp.prompt = job.history;
        dp.result = job.out;
    }
    if (!any) return;
    common_speculative_draft(spec_);
    for (auto& job : jobs) {
        if (job.n_max <= 0) continue;
        if (!job.out->empty()) drafted_[static_cast<size_t>(job.seq)] = true;
        if (ctx_dft_) {
            const auto& checkpoint = dft_checkpoints_[static_cast<size_t>(job.seq)];
            if (dft_recurrent_ && !checkpoint.empty()) {
                llama_state_seq_set_data_ext(ctx_dft_, checkpoint.data(), checkpoint.size(), job.seq,
                                             LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY);
            }
            llama_memory_seq_rm(llama_get_memory(ctx_dft_), job.seq, job.pos0, -1);
        }
        if (static_cast<int32_t>(job.out->size()) > job.n_max) job.out->resize(static_cast<size_t>(job.n_max));
    }
}

void Speculator::accept(llama_seq_id seq, uint16_t n_accepted) {
    if (!drafted_[static_cast<size_t>(seq)]) return;  // common_speculative asserts when nothing was drafted
    common_speculative_accept(spec_, seq, n_accepted);
}

}  // namespace llama_mtp
