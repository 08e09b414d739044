// Private bindings that let pytest drive C++ pieces with logic of their own, case by case, the
// way CTranslate2's tests drive its core (tests/test_core_units.py). Not public API: every name
// starts with an underscore and follows the C++ it wraps. Type conversion only, like every
// binding: bytes in and out where the C++ works on bytes, so a test can split UTF-8 anywhere.
//
// To test another piece (PromptCache, a batch planner, ...): bind a thin wrapper below with an
// underscore name, regenerate python/llama_mtp/_core.pyi (README, "Typing"), and write the cases
// in a tests/test_core_*.py file.
#include <pybind11/stl.h>

#include "bindings.h"
#include "errors.h"
#include "text_stream.h"

namespace py = pybind11;

namespace llama_mtp {

void bind_testing(py::module_& m) {
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
