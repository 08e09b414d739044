// Chat: the model's own jinja template applied, and its output parsed into content / reasoning /
// tool calls, by llama.cpp's common chat code (never re-implemented here).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "chat.h"  // llama.cpp common/chat.h
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
    common_chat_params params;
    common_reasoning_format reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
    bool parse_tool_calls = false;

    // Splits generated text; with `partial`, text may end mid-message (streaming).
    ChatParsed parse(const std::string& text, bool partial) const;
};

class ChatTemplates {
public:
    // `override_template`: jinja source to use instead of the GGUF's (empty: the GGUF's).
    // Throws ChatTemplateError when there is no usable template.
    ChatTemplates(const Model& model, const std::string& override_template);

    // `messages_json` / `tools_json`: OpenAI-format arrays ("" for no tools). Throws
    // InvalidArgument for messages or tools that are not valid, ChatTemplateError when the
    // template fails to render them.
    ChatPrompt apply(const std::string& messages_json, const std::string& tools_json,
                     const std::string& tool_choice, bool enable_thinking, bool add_generation_prompt) const;

private:
    common_chat_templates_ptr templates_;
};

}  // namespace llama_mtp
