#include "gil.h"

#include <atomic>
#include <mutex>
#include <thread>

namespace llama_mtp {
namespace {
std::atomic<bool> g_shutdown{false};
std::mutex g_mutex;
std::thread::id g_main;
}  // namespace

void note_main_thread() {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_main = std::this_thread::get_id();
}

void begin_shutdown() {
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        g_main = std::this_thread::get_id();
    }
    g_shutdown.store(true);
}

bool shutting_down() {
#if PY_VERSION_HEX >= 0x030D0000
    const bool finalizing = Py_IsFinalizing() != 0;
#else
    const bool finalizing = _Py_IsFinalizing() != 0;
#endif
    if (!g_shutdown.load() && !finalizing) return false;
    std::lock_guard<std::mutex> lock(g_mutex);
    return std::this_thread::get_id() != g_main;
}

void park_forever() {
    while (true) std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace llama_mtp
