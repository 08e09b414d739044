#include "text_stream.h"

#include <algorithm>

#include "common.h"  // string_find_partial_stop

namespace llama_mtp {

size_t utf8_complete_prefix(const std::string& text, size_t end) {
    // Walk back over at most 3 continuation bytes to the lead byte of the last character.
    size_t i = end;
    int continuation = 0;
    while (i > 0 && continuation < 4) {
        const unsigned char c = static_cast<unsigned char>(text[i - 1]);
        if ((c & 0xC0) != 0x80) break;
        --i;
        ++continuation;
    }
    if (i == 0) return end;  // only continuation bytes: no lead before them, they never complete
    const unsigned char lead = static_cast<unsigned char>(text[i - 1]);
    int expected = 1;
    if ((lead & 0xE0) == 0xC0) expected = 2;
    else if ((lead & 0xF0) == 0xE0) expected = 3;
    else if ((lead & 0xF8) == 0xF0) expected = 4;
    else if ((lead & 0x80) == 0) expected = 1;
    else return end;  // stray byte: not ours to fix, hand it out (Python decodes with 'replace')
    const int have = continuation + 1;
    if (expected == 1) return end;  // ASCII lead; any continuation bytes after it are stray
    return have < expected ? i - 1 : end;
}

TextStream::TextStream(std::vector<std::string> stops) : stops_(std::move(stops)) {
    stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string TextStream::push(const std::string& piece) {
    if (stopped_) return {};
    buffer_ += piece;

    // A stop string can only start in the part not yet released (partial matches are held).
    size_t stop_at = std::string::npos;
    for (const auto& stop : stops_) {
        const size_t pos = buffer_.find(stop, released_);
        if (pos != std::string::npos && (stop_at == std::string::npos || pos < stop_at)) {
            stop_at = pos;
            matched_stop_ = stop;
        }
    }
    if (stop_at != std::string::npos) {
        stopped_ = true;
        buffer_.resize(stop_at);
        std::string out = buffer_.substr(released_);
        released_ = buffer_.size();
        return out;
    }

    size_t hold = 0;
    for (const auto& stop : stops_) {
        const size_t partial = string_find_partial_stop(buffer_, stop);
        if (partial != std::string::npos) hold = std::max(hold, buffer_.size() - partial);
    }
    size_t end = buffer_.size() - std::min(hold, buffer_.size() - released_);
    end = std::max(released_, utf8_complete_prefix(buffer_, end));
    std::string out = buffer_.substr(released_, end - released_);
    released_ = end;
    return out;
}

std::string TextStream::flush() {
    std::string out = buffer_.substr(released_);
    released_ = buffer_.size();
    return out;
}

}  // namespace llama_mtp
