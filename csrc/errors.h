// C++ exception types of the llama-mtp core. Core code reports failures by throwing these and
// never by aborting the process; the binding layer (bind_errors in bindings.cpp) translates each
// one to a Python exception:
//   ModelLoadError, MTPUnavailableError, ContextOverflowError, DecodeError, ModelClosedError,
//   ChatTemplateError, QuantizeError, QueueFullError -> the llama_mtp.errors class of the same name;
//   InvalidArgument                   ->  ValueError (a bad argument, as Python code raises it);
//   FileMissing                       ->  FileNotFoundError.
// A new type needs its line here and in bind_errors.
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
struct ModelClosedError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// The former name, still thrown by session.cpp until the engine rewrite replaces it.

// The model has no chat template, or its template cannot be parsed or rendered.
struct ChatTemplateError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// llama.cpp's quantizer failed on a source that passed our checks (it cannot write the
// destination, a tensor cannot be requantized, ...); the message carries llama.cpp's reason.
struct QuantizeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// An argument the user passed is not valid (unknown quantization type, bad grammar, ...).
struct InvalidArgument : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// The file to read does not exist.
struct FileMissing : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace llama_mtp
