// Registration functions of the pybind11 module `llama_mtp._core`, one per binding file.
#pragma once

#include <pybind11/pybind11.h>

namespace llama_mtp {

void bind_errors(pybind11::module_& m);
void bind_system(pybind11::module_& m);
void bind_model(pybind11::module_& m);
void bind_engine(pybind11::module_& m);
void bind_chat(pybind11::module_& m);

}  // namespace llama_mtp
