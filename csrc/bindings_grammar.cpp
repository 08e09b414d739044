// Binding of llama.cpp's JSON-schema-to-GBNF converter (common/json-schema-to-grammar.h), used for
// OpenAI's `response_format` (json_object / json_schema). Only type conversion and GIL handling.
#include <exception>
#include <string>

#include "bindings.h"
#include "errors.h"
#include "json-schema-to-grammar.h"
#include "json.h"

namespace py = pybind11;

namespace llama_mtp {

void bind_grammar(py::module_& m) {
    m.def(
        "json_schema_to_grammar",
        [](const std::string& schema_json) -> std::string {
            common_json schema;
            try {
                schema = common_json::parse(schema_json);
            } catch (const std::exception& e) {
                throw InvalidArgument(std::string("the JSON schema is not valid JSON: ") + e.what());
            }
            // llama.cpp throws std::invalid_argument / std::runtime_error for what it cannot convert
            // (unsupported keywords, patterns, $refs): a ValueError, not a crash.
            try {
                return json_schema_to_grammar(schema, /*force_gbnf=*/true);
            } catch (const std::exception& e) {
                throw InvalidArgument(e.what());
            }
        },
        py::arg("schema_json"), py::call_guard<py::gil_scoped_release>(),
        "GBNF grammar accepting exactly the JSON documents valid under a JSON schema (given as JSON "
        "text), by llama.cpp's common/json-schema-to-grammar. Raises ValueError for invalid or "
        "unsupported schemas.");
}

}  // namespace llama_mtp
