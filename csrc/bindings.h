// Registration functions of the pybind11 module `llama_mtp._core`, one per binding file.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/typing.h>

#include <cstddef>

#include "gguf_file.h"

#include "gil.h"

namespace llama_mtp {

// Deleter of the native objects that own llama.cpp models and contexts: when the last reference
// goes away under the GIL (a Python object collected), the object is freed without it. Freeing
// weights held by an RPC server waits for ggml-rpc's dispatcher thread, which logs through the
// Python log sink when the server is gone: with the GIL held here, that wait never ended.
struct DeleteWithoutGil {
    template <class T>
    void operator()(T* p) const {
        if (Py_IsInitialized() && PyGILState_Check()) {
            GilRelease release;
            delete p;
        } else {
            delete p;
        }
    }
};

void bind_errors(pybind11::module_& m);
void bind_system(pybind11::module_& m);
void bind_model(pybind11::module_& m);
void bind_engine(pybind11::module_& m);
void bind_chat(pybind11::module_& m);
void bind_testing(pybind11::module_& m);

using StrDict = pybind11::typing::Dict<pybind11::str, pybind11::object>;

// A GGUF's header, metadata (arrays cut to `max_array_items` items) and tensor table as the dict
// that llama_mtp.gguf_info turns into a GGUFReport: one conversion for read_gguf() and Model.
StrDict gguf_to_dict(const GgufFile& f, size_t max_array_items);
void bind_grammar(pybind11::module_& m);

}  // namespace llama_mtp
