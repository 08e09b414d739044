#include "chat_format.h"

#include "errors.h"
#include "json.h"
#include "log_bridge.h"

namespace llama_mtp {

ChatTemplates::ChatTemplates(const Model& model, const std::string& override_template) {
    ModelHandle handle = model.handle();
    if (override_template.empty() && !model.chat_template("").has_value()) {
        throw ChatTemplateError("the model has no chat template (tokenizer.chat_template); pass chat_template= "
                                "with a jinja template, or use generate() with a raw prompt");
    }
    try {
        templates_ = common_chat_templates_init(handle.get(), override_template);
    } catch (const std::exception& e) {
        throw ChatTemplateError(std::string("the chat template could not be parsed: ") + e.what());
    }
    if (!templates_) throw ChatTemplateError("the chat template could not be loaded");
}

ChatPrompt ChatTemplates::apply(const std::string& messages_json, const std::string& tools_json,
                                const std::string& tool_choice, bool enable_thinking,
                                bool add_generation_prompt) const {
    common_chat_templates_inputs in;
    try {
        in.messages = common_chat_msgs_parse_oaicompat(common_json::parse(messages_json));
        if (!tools_json.empty()) in.tools = common_chat_tools_parse_oaicompat(common_json::parse(tools_json));
        in.tool_choice = common_chat_tool_choice_parse_oaicompat(tool_choice);
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("invalid chat messages or tools: ") + e.what());
    }
    if (in.messages.empty()) throw InvalidArgument("chat needs at least one message");
    in.add_generation_prompt = add_generation_prompt;
    in.use_jinja = true;
    in.enable_thinking = enable_thinking;
    in.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
    in.chat_template_kwargs["enable_thinking"] = enable_thinking ? "true" : "false";

    ChatPrompt out;
    try {
        out.params = common_chat_templates_apply(templates_.get(), in);
    } catch (const std::exception& e) {
        throw ChatTemplateError(std::string("the chat template failed: ") + e.what());
    }
    out.prompt = out.params.prompt;
    out.additional_stops = out.params.additional_stops;
    out.generation_prompt = out.params.generation_prompt;
    out.supports_thinking = out.params.supports_thinking;
    out.thinking_start_tag = out.params.thinking_start_tag;
    out.thinking_end_tags = out.params.thinking_end_tags;
    out.reasoning_format = in.reasoning_format;
    out.parse_tool_calls = !in.tools.empty();
    return out;
}

ChatParsed ChatPrompt::parse(const std::string& text, bool partial) const {
    common_chat_parser_params pp(params);
    pp.reasoning_format = reasoning_format;
    pp.parse_tool_calls = parse_tool_calls;
    if (!params.parser.empty()) pp.parser.load(params.parser);
    common_chat_msg msg;
    try {
        msg = common_chat_parse(text, partial, pp);
    } catch (const std::exception&) {
        // The output does not follow the template's format (a truncated reply, say): keep it all
        // as content rather than lose it.
        msg.content = text;
    }
    ChatParsed out;
    out.content = msg.content;
    out.reasoning_content = msg.reasoning_content;
    for (const auto& call : msg.tool_calls) out.tool_calls.push_back({call.name, call.arguments, call.id});
    return out;
}

}  // namespace llama_mtp
