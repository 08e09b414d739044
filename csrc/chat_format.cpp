#include "chat_format.h"

#include <random>

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
                                const std::string& tool_choice, const std::string& json_schema,
                                bool enable_thinking, bool add_generation_prompt) const {
    common_chat_templates_inputs in;
    try {
        in.messages = common_chat_msgs_parse_oaicompat(common_json::parse(messages_json));
        if (!tools_json.empty()) in.tools = common_chat_tools_parse_oaicompat(common_json::parse(tools_json));
        in.tool_choice = common_chat_tool_choice_parse_oaicompat(tool_choice);
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("invalid chat messages or tools: ") + e.what());
    }
    if (!json_schema.empty()) {
        common_json schema;
        try {
            schema = common_json::parse(json_schema);
        } catch (const std::exception& e) {
            throw InvalidArgument(std::string("the JSON schema is not valid JSON: ") + e.what());
        }
        if (!schema.is_object()) throw InvalidArgument("a JSON schema must be an object");
        // An empty schema means any JSON object (llama-server); common treats {} as no format.
        if (schema.empty()) schema["type"] = "object";
        in.json_schema = schema.dump();
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
        // The schema is converted while the template's parser is built: name it when it fails.
        if (!in.json_schema.empty()) {
            throw InvalidArgument(std::string("the JSON schema cannot be used: ") + e.what());
        }
        throw ChatTemplateError(std::string("the chat template failed: ") + e.what());
    }
    out.prompt = out.params.prompt;
    out.json_format = !in.json_schema.empty();
    out.grammar = out.params.grammar;
    out.grammar_lazy = out.params.grammar_lazy;
    out.grammar_triggers = out.params.grammar_triggers;
    out.additional_stops = out.params.additional_stops;
    out.generation_prompt = out.params.generation_prompt;
    out.supports_thinking = out.params.supports_thinking;
    out.thinking_start_tag = out.params.thinking_start_tag;
    out.thinking_end_tags = out.params.thinking_end_tags;
    out.reasoning_format = in.reasoning_format;
    out.parse_tool_calls = !in.tools.empty();
    return out;
}

namespace {

common_chat_parser_params parser_params(const ChatPrompt& prompt) {
    common_chat_parser_params pp(prompt.params);
    pp.reasoning_format = prompt.reasoning_format;
    pp.parse_tool_calls = prompt.parse_tool_calls;
    if (!prompt.params.parser.empty()) pp.parser.load(prompt.params.parser);
    return pp;
}

common_chat_msg parse_text(const std::string& text, bool partial, const common_chat_parser_params& pp) {
    try {
        return common_chat_parse(text, partial, pp);
    } catch (const std::exception&) {
        // The output does not follow the template's format (a truncated reply, say): keep it all
        // as content rather than lose it.
        common_chat_msg msg;
        msg.content = text;
        return msg;
    }
}

ChatParsed to_parsed(const common_chat_msg& msg) {
    ChatParsed out;
    out.content = msg.content;
    out.reasoning_content = msg.reasoning_content;
    for (const auto& call : msg.tool_calls) out.tool_calls.push_back({call.name, call.arguments, call.id});
    return out;
}

std::string tool_call_id() {
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<size_t> pick(0, sizeof(chars) - 2);
    std::string id = "call_";
    for (int i = 0; i < 24; ++i) id += chars[pick(rng)];
    return id;
}

}  // namespace

ChatParsed ChatPrompt::parse(const std::string& text, bool partial) const {
    return to_parsed(parse_text(text, partial, parser_params(*this)));
}

void ChatPrompt::constrain(SamplingOptions& sampling) const {
    sampling.generation_prompt = generation_prompt;
    if (grammar.empty()) return;
    if (!sampling.grammar.empty()) {
        if (json_format) {
            throw InvalidArgument("a grammar cannot be combined with a JSON response format (json_schema): "
                                  "the JSON schema makes the reply's grammar");
        }
        return;  // the caller's grammar is the reply's syntax: it replaces the tool-call grammar
    }
    sampling.grammar = grammar;
    sampling.grammar_from_template = true;
    sampling.grammar_lazy = grammar_lazy;
    sampling.grammar_triggers = grammar_triggers;
}

ChatStreamParser::ChatStreamParser(const ChatPrompt& prompt) : params_(parser_params(prompt)) {}

std::vector<ChatDelta> ChatStreamParser::push(const std::string& text, bool final) {
    text_ += text;
    common_chat_msg next;
    if (final) {
        next = parse_text(text_, false, params_);
    } else {
        try {
            next = common_chat_parse(text_, true, params_);
        } catch (const std::exception&) {
            return {};  // not parseable yet: wait for more text
        }
    }
    std::vector<ChatDelta> out;
    if (next.empty() && !final) return out;
    next.set_tool_call_ids(tool_call_ids_, tool_call_id);
    std::vector<common_chat_msg_diff> diffs;
    try {
        diffs = common_chat_msg_diff::compute_diffs(msg_, next);
    } catch (const std::exception&) {
        // A partial parse that a later one contradicts (fewer tool calls, say): keep the earlier
        // message and wait for the final parse, whose diff against it is always well formed.
        if (!final) return out;
        common_chat_msg prev = msg_;
        prev.tool_calls.clear();
        diffs = common_chat_msg_diff::compute_diffs(prev, next);
    }
    msg_ = std::move(next);
    for (const auto& d : diffs) {
        ChatDelta delta;
        delta.content = d.content_delta;
        delta.reasoning_content = d.reasoning_content_delta;
        if (d.tool_call_index != std::string::npos) {
            delta.tool_call_index = static_cast<int32_t>(d.tool_call_index);
            delta.tool_call_id = d.tool_call_delta.id;
            delta.tool_call_name = d.tool_call_delta.name;
            delta.tool_call_arguments = d.tool_call_delta.arguments;
        }
        out.push_back(std::move(delta));
    }
    return out;
}

ChatParsed ChatStreamParser::message() const { return to_parsed(msg_); }

}  // namespace llama_mtp
