// Binding of the chat template / reply parser (csrc/chat_format.h).
#include <pybind11/stl.h>

#include "bindings.h"
#include "gil.h"
#include "chat_format.h"

namespace py = pybind11;

namespace llama_mtp {

void bind_chat(py::module_& m) {
    py::class_<ChatToolCall>(m, "ChatToolCall", "A tool call parsed from the model's reply.")
        .def_readonly("name", &ChatToolCall::name)
        .def_readonly("arguments", &ChatToolCall::arguments)
        .def_readonly("id", &ChatToolCall::id);

    py::class_<ChatParsed>(m, "ChatParsed", "A reply split into content, reasoning and tool calls.")
        .def_readonly("content", &ChatParsed::content)
        .def_readonly("reasoning_content", &ChatParsed::reasoning_content)
        .def_readonly("tool_calls", &ChatParsed::tool_calls);

    py::class_<ChatPrompt>(m, "ChatPrompt", "A rendered chat prompt and the parser of its reply.")
        .def_readonly("prompt", &ChatPrompt::prompt)
        .def_readonly("additional_stops", &ChatPrompt::additional_stops)
        .def_readonly("generation_prompt", &ChatPrompt::generation_prompt)
        .def_readonly("supports_thinking", &ChatPrompt::supports_thinking)
        .def_readonly("thinking_start_tag", &ChatPrompt::thinking_start_tag)
        .def_readonly("thinking_end_tags", &ChatPrompt::thinking_end_tags)
        .def_readonly("grammar", &ChatPrompt::grammar)
        .def_readonly("grammar_lazy", &ChatPrompt::grammar_lazy)
        .def_readonly("json_format", &ChatPrompt::json_format)
        .def_property_readonly(
            "grammar_triggers",
            [](const ChatPrompt& p) {
                std::vector<std::string> out;
                for (const auto& t : p.grammar_triggers) out.push_back(t.value);
                return out;
            },
            "The texts (words or regex patterns) that start a lazy grammar.")
        .def("parse", &ChatPrompt::parse, py::arg("text"), py::arg("partial"),
             py::call_guard<GilRelease>())
        .def("constrain", &ChatPrompt::constrain, py::arg("sampling"),
             "Put the template's grammar (if any) and generation prompt into the sampling options.");

    py::class_<ChatDelta>(m, "ChatDelta", "A streamed piece of a reply (see llama_mtp.ChatDelta).")
        .def_readonly("content", &ChatDelta::content)
        .def_readonly("reasoning_content", &ChatDelta::reasoning_content)
        .def_readonly("tool_call_index", &ChatDelta::tool_call_index)
        .def_readonly("tool_call_id", &ChatDelta::tool_call_id)
        .def_readonly("tool_call_name", &ChatDelta::tool_call_name)
        .def_readonly("tool_call_arguments", &ChatDelta::tool_call_arguments);

    py::class_<ChatStreamParser>(m, "ChatStreamParser",
                                 "Parses a streamed reply into deltas (llama.cpp's common_chat_msg_diff).")
        .def(py::init<const ChatPrompt&>(), py::arg("prompt"))
        .def("push", &ChatStreamParser::push, py::arg("text"), py::arg("final"), py::call_guard<GilRelease>())
        .def("message", &ChatStreamParser::message);

    py::class_<ChatTemplates>(m, "ChatTemplates", "The model's chat template (llama.cpp common chat).")
        .def(py::init<const Model&, const std::string&>(), py::arg("model"), py::arg("override_template"))
        .def("apply", &ChatTemplates::apply, py::arg("messages_json"), py::arg("tools_json"),
             py::arg("tool_choice"), py::arg("json_schema"), py::arg("enable_thinking"),
             py::arg("add_generation_prompt"),
             py::call_guard<GilRelease>());
}

}  // namespace llama_mtp
