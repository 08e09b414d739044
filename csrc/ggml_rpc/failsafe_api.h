// What ggml-rpc's transport failures left behind (failsafe.cpp, compiled into ggml-base so that
// the loadable ggml-rpc module of a portable build and our extension share one record).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ggml.h"

#if !defined(_WIN32)
#include <sys/socket.h>
#include <sys/types.h>
#endif

#ifdef __cplusplus
// What GGML_ABORT / GGML_ASSERT call in ggml-rpc's sources (failsafe.h). C++ linkage: it may
// throw, and MSVC's /EHsc assumes that extern "C" functions never do.
GGML_API void llama_mtp_rpc_abort(const char* file, int line, const char* fmt, ...);

extern "C" {
#endif

#if !defined(_WIN32)
// transport.cpp's send() / recv() (failsafe.h)
GGML_API ssize_t llama_mtp_rpc_send(int fd, const void* buf, size_t len, int flags);
GGML_API ssize_t llama_mtp_rpc_recv(int fd, void* buf, size_t len, int flags);
#endif

// Broken RPC connections seen so far to the server at `peer` ("a.b.c.d:port", the address the
// socket is connected to), or to any server when `peer` is NULL. Monotonic.
GGML_API uint64_t llama_mtp_rpc_failures(const char* peer);

// The last broken connection, "a.b.c.d:port: <what happened>" (empty if none); returns the
// length written (truncated to size - 1).
GGML_API size_t llama_mtp_rpc_last_failure(char* buf, size_t size);

#ifdef __cplusplus
}
#endif
