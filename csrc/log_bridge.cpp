#include "log_bridge.h"

#include <atomic>
#include <memory>
#include <mutex>

#include "ggml.h"
#include "llama.h"
#include "log.h"  // llama.cpp common/ log, which has its own worker thread

namespace llama_mtp {
namespace {

std::mutex g_sink_mutex;
std::shared_ptr<LogSink> g_sink;
std::atomic<int> g_min_level{kWarning};

// llama.cpp logs a line in pieces (GGML_LOG_LEVEL_CONT); assemble whole lines per thread.
thread_local std::string t_pending;
thread_local int t_pending_level = kInfo;
thread_local std::string t_errors;
constexpr size_t kMaxErrorChars = 4096;

int to_python_level(ggml_log_level level) {
    switch (level) {
        case GGML_LOG_LEVEL_DEBUG: return kDebug;
        case GGML_LOG_LEVEL_WARN: return kWarning;
        case GGML_LOG_LEVEL_ERROR: return kError;
        default: return kInfo;
    }
}

void emit(int level, std::string line) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.empty()) return;
    if (level >= kWarning) {
        t_errors.append(line).push_back('\n');
        if (t_errors.size() > kMaxErrorChars) t_errors.erase(0, t_errors.size() - kMaxErrorChars);
    }
    if (level < g_min_level.load(std::memory_order_relaxed)) return;
    std::shared_ptr<LogSink> sink;
    {
        std::lock_guard<std::mutex> lock(g_sink_mutex);
        sink = g_sink;
    }
    if (sink && *sink) (*sink)(level, line);
}

void on_llama_log(ggml_log_level level, const char* text, void* /*user_data*/) {
    if (text == nullptr) return;
    if (level != GGML_LOG_LEVEL_CONT) {
        if (!t_pending.empty()) emit(t_pending_level, std::move(t_pending));
        t_pending.clear();
        t_pending_level = to_python_level(level);
    }
    t_pending.append(text);
    size_t newline;
    while ((newline = t_pending.find('\n')) != std::string::npos) {
        emit(t_pending_level, t_pending.substr(0, newline));
        t_pending.erase(0, newline + 1);
    }
}

void apply_common_log_level(int min_level) {
    // common/'s logger prints from its own thread straight to stdout/stderr. It stays paused
    // (messages discarded) unless the user asked for DEBUG output.
    if (min_level <= kDebug) {
        common_log_resume(common_log_main());
    } else {
        common_log_pause(common_log_main());
    }
}

}  // namespace

void install_log_bridge() {
    llama_log_set(on_llama_log, nullptr);
    apply_common_log_level(g_min_level.load());
}

void set_log_sink(LogSink sink, int min_level) {
    {
        std::lock_guard<std::mutex> lock(g_sink_mutex);
        g_sink = sink ? std::make_shared<LogSink>(std::move(sink)) : nullptr;
    }
    g_min_level.store(min_level);
    apply_common_log_level(min_level);
}

void log_line(int level, std::string line) { emit(level, std::move(line)); }

bool log_enabled(int level) { return level >= g_min_level.load(std::memory_order_relaxed); }

std::string take_thread_errors() {
    std::string out;
    out.swap(t_errors);
    if (!t_pending.empty()) out.append(t_pending);
    return out;
}

void clear_thread_errors() { t_errors.clear(); }

}  // namespace llama_mtp
