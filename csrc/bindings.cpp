// Module entry point of `llama_mtp._core` and the process-wide bindings (errors, logging,
// backend/system info, GGUF reading, quantization). Only type conversion and GIL handling here.
#include "bindings.h"

#include <pybind11/stl.h>

#include <type_traits>
#include <variant>

#include "backend.h"
#include "errors.h"
#include "gguf_file.h"
#include "gil.h"
#include "log_bridge.h"
#include "quantize.h"

namespace py = pybind11;

namespace llama_mtp {

namespace {

// Sets the Python error `python_type` for `e` if `e` is an `E`.
template <typename E>
bool raise_as(const std::exception& e, PyObject* python_type) {
    if (dynamic_cast<const E*>(&e) == nullptr) return false;
    PyErr_SetString(python_type, e.what());
    return true;
}

// The same, with the llama_mtp.errors class named after E (errors.h's promise).
template <typename E>
bool raise_as(const std::exception& e, const char* errors_class) {
    if (dynamic_cast<const E*>(&e) == nullptr) return false;
    PyErr_SetString(py::module_::import("llama_mtp.errors").attr(errors_class).ptr(), e.what());
    return true;
}

}  // namespace

void bind_errors(py::module_& m) {
    // The Python classes live in llama_mtp.errors so that users can import them without the
    // extension; here each C++ exception type (errors.h) is translated to its Python counterpart.
    py::module_::import("llama_mtp.errors");  // fails at import time, not at the first error
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::exception& e) {
            const bool ours = raise_as<ModelLoadError>(e, "ModelLoadError") ||
                              raise_as<MTPUnavailableError>(e, "MTPUnavailableError") ||
                              raise_as<ContextOverflowError>(e, "ContextOverflowError") ||
                              raise_as<DecodeError>(e, "DecodeError") ||
                              raise_as<ModelClosedError>(e, "ModelClosedError") ||
                              raise_as<ChatTemplateError>(e, "ChatTemplateError") ||
                              raise_as<QuantizeError>(e, "QuantizeError") ||
                              raise_as<QueueFullError>(e, "QueueFullError") ||
                              raise_as<InvalidArgument>(e, PyExc_ValueError) ||
                              raise_as<FileMissing>(e, PyExc_FileNotFoundError);
            if (!ours) throw;  // pybind11's own translation (std::bad_alloc -> MemoryError, ...)
        }
    });
    (void)m;
}

namespace {

template <typename T>
struct is_vector : std::false_type {};
template <typename T>
struct is_vector<std::vector<T>> : std::true_type {};

// GGUF strings (keys, values, tensor names) are meant to be UTF-8, but a damaged file's may not
// be: decoded with U+FFFD for the bad bytes, so that reading the metadata of such a file never
// raises UnicodeDecodeError (whether the file is usable is for the loader to say).
py::str gguf_str(const std::string& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

// A metadata value; arrays cut to their first `max_items` items.
py::object gguf_value(const GgufValue& value, size_t max_items) {
    return std::visit([max_items](const auto& v) -> py::object {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
            return gguf_str(v);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            py::list out;
            for (size_t i = 0; i < v.size() && i < max_items; ++i) out.append(gguf_str(v[i]));
            return out;
        } else {
            if constexpr (is_vector<T>::value) {
                if (v.size() > max_items) {
                    return py::cast(T(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(max_items)));
                }
            }
            return py::cast(v);
        }
    }, value);
}

}  // namespace

StrDict gguf_to_dict(const GgufFile& f, size_t max_array_items) {
    StrDict out;
    out["path"] = f.path;
    out["parts"] = f.parts;
    out["version"] = f.version;
    out["file_size"] = f.file_size;
    out["alignment"] = f.alignment;
    out["data_offset"] = f.data_offset;
    py::list metadata;
    for (const auto& [key, value] : f.metadata) {
        metadata.append(py::make_tuple(gguf_str(key), gguf_value(value, max_array_items)));
    }
    out["metadata"] = metadata;
    py::list tensors;
    for (const auto& t : f.tensors) {
        py::dict d;
        d["name"] = gguf_str(t.name);
        d["type"] = t.type;
        d["shape"] = t.shape;
        d["offset"] = t.offset;
        d["part"] = t.part;
        d["n_bytes"] = t.n_bytes;
        d["n_elements"] = t.n_elements;
        tensors.append(d);
    }
    out["tensors"] = tensors;
    return out;
}

namespace {

// Deleting a Python object needs the GIL; a log sink may be dropped from any thread.
std::shared_ptr<py::object> hold_python(py::object fn) {
    return std::shared_ptr<py::object>(new py::object(std::move(fn)), [](py::object* o) {
        if (Py_IsInitialized()) {
            py::gil_scoped_acquire gil;
            delete o;
        }  // else: the interpreter is gone; leak rather than touch it.
    });
}

}  // namespace

void bind_system(py::module_& m) {
    m.def("init_backend", &ensure_backend, py::arg("backend_dir"),
          py::call_guard<GilRelease>(),
          "Initialise llama.cpp's backends once (loads run-time backends from backend_dir).");

    m.def(
        "set_log_sink",
        [](py::object fn, int min_level) {
            if (fn.is_none()) {
                set_log_sink({}, min_level);
                return;
            }
            auto holder = hold_python(std::move(fn));
            set_log_sink(
                [holder](int level, const std::string& message) {
                    // The engine's threads log too: never from them once the interpreter goes away.
                    if (!Py_IsInitialized() || shutting_down()) return;
                    py::gil_scoped_acquire gil;
                    try {
                        (*holder)(level, py::bytes(message).attr("decode")("utf-8", "replace"));
                    } catch (py::error_already_set& e) {
                        e.discard_as_unraisable("llama_mtp log sink");
                    }
                },
                min_level);
        },
        py::arg("sink"), py::arg("min_level"),
        "Route llama.cpp's log lines at or above min_level (Python logging level) to sink(level, msg).");

    m.def("system_info", []() -> StrDict {
        SystemInfo info = system_info();
        StrDict out;
        out["llama_commit"] = info.llama_commit;
        out["llama_version"] = info.llama_version;
        out["backend_dl"] = info.backend_dl;
        out["backends"] = info.backends;
        py::list devices;
        for (const auto& d : info.devices) {
            py::dict dev;
            dev["name"] = d.name;
            dev["description"] = d.description;
            dev["type"] = d.type;
            dev["memory_total"] = d.memory_total;
            dev["memory_free"] = d.memory_free;
            devices.append(dev);
        }
        out["devices"] = devices;
        out["cpu_features"] = info.cpu_features;
        out["cuda_compiled"] = info.cuda_compiled;
        out["cuda_archs"] = info.cuda_archs;
        out["gpu_offload"] = info.gpu_offload;
        out["rpc"] = info.rpc;
        out["rpc_protocol"] = info.rpc_protocol;
        return out;
    }, "Backends, devices and build facts of this llama.cpp build, as a dict.");

    m.def(
        "read_gguf",
        [](const std::string& path, size_t max_array_items) -> StrDict {
            GgufFile f;
            {
                GilRelease release;
                f = read_gguf(path, max_array_items);
            }
            return gguf_to_dict(f, max_array_items);
        },
        py::arg("path"), py::arg("max_array_items") = static_cast<size_t>(-1),
        "Parse and validate a GGUF file without loading weights (header, metadata, tensors).");

    m.def("quantization_types", &quantization_types,
          "Quantization type names accepted by quantize().");
    m.def("quantize", &quantize, py::arg("src"), py::arg("dst"), py::arg("type"),
          py::arg("threads") = 0, py::arg("allow_requantize") = false,
          py::call_guard<GilRelease>(),
          "Quantize a GGUF model file with llama.cpp's quantizer.");
}

}  // namespace llama_mtp

PYBIND11_MODULE(_core, m) {
    m.doc() = "llama-mtp native core: llama.cpp with MTP speculative decoding.";
    llama_mtp::limit_malloc_arenas();  // before any thread of ours starts (csrc/backend.cpp)
    llama_mtp::bind_errors(m);
    llama_mtp::bind_system(m);
    llama_mtp::bind_model(m);
    llama_mtp::bind_engine(m);
    llama_mtp::bind_chat(m);
    llama_mtp::bind_testing(m);
    llama_mtp::bind_grammar(m);
}
