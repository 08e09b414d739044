// Routes llama.cpp / ggml log output to a sink (the binding layer hands it to Python's
// `logging`), and keeps the last error lines of each thread so that a failure can be reported
// with llama.cpp's own reason.
#pragma once

#include <functional>
#include <string>

namespace llama_mtp {

// Python logging levels, used throughout the bridge.
enum LogLevel : int { kDebug = 10, kInfo = 20, kWarning = 30, kError = 40 };

using LogSink = std::function<void(int level, const std::string& message)>;

// Installs the bridge as llama.cpp's log callback. Safe to call more than once.
void install_log_bridge();

// Sets the sink; lines below `min_level` are dropped in C++ (cheap: no sink call at all).
// An empty sink detaches it.
void set_log_sink(LogSink sink, int min_level);

// llama-mtp's own lines, through the same sink (the `llama_mtp` logger). Cheap when `level` is
// below the sink's minimum: check log_enabled() first when building the line costs something.
void log_line(int level, std::string line);
bool log_enabled(int level);

// Warning/error lines that llama.cpp logged on this thread since the last clear.
std::string take_thread_errors();
void clear_thread_errors();

}  // namespace llama_mtp
