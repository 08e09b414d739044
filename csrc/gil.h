// The GIL in threads that may outlive the interpreter's finalization.
//
// A thread that waits in native code with the GIL released and re-takes it after the interpreter
// began to finalize is ended by CPython with pthread_exit(). The forced unwind that follows must
// not meet a noexcept frame -- pybind11's gil_scoped_release re-takes the GIL in its (noexcept)
// destructor, which turned every such exit into std::terminate() ("terminate called without an
// active exception", the abort after leaving a stream early). So, in this module:
//   * the GIL is re-taken from functions that may propagate the unwind (GilRelease's destructor
//     is noexcept(false));
//   * once llama_mtp's exit hook ran (begin_shutdown: all engines closed, nothing more to hand
//     over) or the interpreter is finalizing, a waiting thread never re-takes the GIL: it parks
//     until the process ends;
//   * threads the engine owns never take the GIL at all (the log bridge drops lines instead).
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>

namespace llama_mtp {

// Called by llama_mtp's atexit hook (before the interpreter finalizes), on the thread that will
// finalize it.
void begin_shutdown();
// Records the thread that imported the module (the finalizing thread until begin_shutdown says).
void note_main_thread();
// The exit hook ran or the interpreter is finalizing, and this is not the thread doing it.
bool shutting_down();
// Blocks the calling thread until the process ends (it holds no GIL and no lock).
[[noreturn]] void park_forever();

// Releases the GIL for its lifetime; re-takes it unless the interpreter is going away.
class GilRelease {
public:
    GilRelease() : state_(PyEval_SaveThread()) {}
    ~GilRelease() noexcept(false) {
        if (shutting_down()) park_forever();
        PyEval_RestoreThread(state_);
    }
    GilRelease(const GilRelease&) = delete;
    GilRelease& operator=(const GilRelease&) = delete;

private:
    PyThreadState* state_;
};

// Waits for `ready(deadline)` (a callable run without the GIL that returns true once the awaited
// thing happened, false when `deadline` passed) in slices of at most 50 ms, looking for Ctrl-C
// in between (KeyboardInterrupt propagates as error_already_set). Returns false on timeout.
template <class Ready>
bool wait_without_gil(Ready&& ready, std::chrono::steady_clock::time_point deadline) {
    using Clock = std::chrono::steady_clock;
    while (true) {
        const auto slice = std::min(deadline, Clock::now() + std::chrono::milliseconds(50));
        bool done = false;
        {
            GilRelease release;
            done = ready(slice);
        }
        if (done) return true;
        if (PyErr_CheckSignals() != 0) throw pybind11::error_already_set();
        if (Clock::now() >= deadline) return false;
    }
}

}  // namespace llama_mtp
