// C++ exception types of the llama-mtp core. The binding layer maps each one to the Python class
// of the same name in llama_mtp.errors, so core code reports failures by throwing these and never
// by aborting the process.
#pragma once

#include <stdexcept>
#include <string>

namespace llama_mtp {

// The file is not a loadable model: bad magic, truncated, unsupported architecture, ...
struct ModelLoadError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Speculative decoding with MTP was asked for, but the model has no usable MTP head.
struct MTPUnavailableError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The prompt (plus what must be generated) does not fit in the context window.
struct ContextOverflowError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// llama.cpp reported a failure while decoding (out of memory, backend error, ...).
struct DecodeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// More requests already wait for a slot than the engine's queue holds.
struct QueueFullError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A model/session was used after close().
struct ClosedError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// An argument the user passed is not valid (unknown quantization type, bad grammar, ...).
struct InvalidArgument : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

}  // namespace llama_mtp
