// Chat: the model's own jinja template applied, and its output parsed into content / reasoning /
// tool calls, by llama.cpp's common chat code (never re-implemented here).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "chat.h"  // llama.cpp common/chat.h
#include "generation.h"
#include "model.h"

namespace llama_mtp {

struct ChatToolCall {
    std::string name;
    std::string arguments;  // JSON text
    std::string id;
};

struct ChatParsed {
    std::string content;
    std::string reasoning_content;
    std::vector<ChatToolCall> tool_calls;
};

// A rendered prompt plus what is needed to parse the reply.
struct ChatPrompt {
    std::string prompt;
    std::vector<std::string> additional_stops;
    std::string generation_prompt;
    bool supports_thinking = false;
    std::string thinking_start_tag;
    std::vector<std::string> thinking_end_tags;
    // The template's grammar for this reply (GBNF; empty: none): a JSON response format after
    // the reasoning, or the tool calls' syntax. Built by llama.cpp from the template's own
    // parser, so the reasoning part stays free text; `grammar_lazy`: only from a trigger on.
    std::string grammar;
    bool grammar_lazy = false;
    std::vector<common_grammar_trigger> grammar_triggers;
    bool json_format = false;  // the grammar is a JSON response format's (apply's json_schema)
    common_chat_params params;
    common_reasoning_format reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
    bool parse_tool_calls = false;

    // Splits generated text; with `partial`, text may end mid-message (streaming).
    ChatParsed parse(const std::string& text, bool partial) const;

    // Puts the template's grammar (if any) and generation prompt into `sampling`, as
    // llama-server does for a chat request. A grammar already in `sampling` (the caller's) is
    // kept in place of a tool-call grammar; with a JSON response format it is an error
    // (InvalidArgument): one grammar constrains the reply.
    void constrain(SamplingOptions& sampling) const;
};

// A piece of a streamed reply: new answer / reasoning text, or a piece of one tool call (its
// index among the reply's tool calls; name and id when they first appear, then argument text).
struct ChatDelta {
    std::string content;
    std::string reasoning_content;
    int32_t tool_call_index = -1;  // -1: no tool-call piece
    std::string tool_call_id;
    std::string tool_call_name;
    std::string tool_call_arguments;
};

// Parses a reply as it streams in, as llama-server does: the text so far is parsed with the
// template's parser (kept loaded) and the change against the previous parse is handed out as
// deltas (llama.cpp's common_chat_msg_diff), tool-call pieces included.
class ChatStreamParser {
public:
    explicit ChatStreamParser(const ChatPrompt& prompt);
    // Adds generated text; `final` once the reply is complete. Returns the new deltas.
    std::vector<ChatDelta> push(const std::string& text, bool final);
    // The reply as parsed so far (after push(..., true): the final one).
    ChatParsed message() const;

private:
    common_chat_parser_params params_;
    std::string text_;
    common_chat_msg msg_;
    std::vector<std::string> tool_call_ids_;
};

class ChatTemplates {
public:
    // `override_template`: jinja source to use instead of the GGUF's (empty: the GGUF's).
    // Throws ChatTemplateError when there is no usable template.
    ChatTemplates(const Model& model, const std::string& override_template);

    // `messages_json` / `tools_json`: OpenAI-format arrays ("" for no tools). `json_schema`: the
    // reply's JSON schema as JSON text ("": free text; "{}": any JSON object), turned into the
    // prompt's grammar by the template's own parser (reasoning first, then the JSON). Throws
    // InvalidArgument for messages, tools or a schema that are not valid, ChatTemplateError when
    // the template fails to render them.
    ChatPrompt apply(const std::string& messages_json, const std::string& tools_json,
                     const std::string& tool_choice, const std::string& json_schema, bool enable_thinking,
                     bool add_generation_prompt) const;

private:
    common_chat_templates_ptr templates_;
};

}  // namespace llama_mtp
