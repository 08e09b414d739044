// Turns generated token pieces into text that is safe to hand out while streaming:
// a multi-byte UTF-8 character split across tokens is held back until complete, and text that
// may be the beginning of a stop string is held back until it is known not to be one.
#pragma once

#include <string>
#include <vector>

namespace llama_mtp {

class TextStream {
public:
    explicit TextStream(std::vector<std::string> stops);

    // Adds the bytes of one token; returns the text that became safe to release.
    std::string push(const std::string& piece);
    // Releases what is still held (at the end of generation).
    std::string flush();

    bool stopped() const { return stopped_; }
    const std::string& matched_stop() const { return matched_stop_; }
    // Everything generated so far, cut before the stop string once one matched.
    const std::string& text() const { return buffer_; }

private:
    std::vector<std::string> stops_;
    std::string buffer_;
    size_t released_ = 0;
    bool stopped_ = false;
    std::string matched_stop_;
};

// Length of the longest prefix of `text` that ends on a UTF-8 character boundary
// (an incomplete trailing sequence is excluded; invalid bytes count as complete).
size_t utf8_complete_prefix(const std::string& text, size_t end);

}  // namespace llama_mtp
