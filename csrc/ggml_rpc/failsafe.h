// Force-included (`-include`, `/FI`) into ggml-rpc's own sources by CMakeLists.txt: nothing in
// the vendored tree is edited. It changes what ggml-rpc does when a connection breaks.
//
// ggml-rpc (this tree, protocol 7) reports every transport failure with GGML_ABORT, i.e. by
// aborting the process:
//   * a server that cannot be reached or fails the handshake: "Failed to connect to %s",
//     "RPC handshake failed for %s" (in rpc_dispatcher::start, on the caller's thread);
//   * a server that goes away while connected: RPC_STATUS_ASSERT, "Remote RPC server crashed or
//     returned malformed response", on the dispatcher thread that owns the socket, while the
//     thread running the graph waits on a future that only that dispatcher completes.
// A library must not take the interpreter down for a remote machine's fault, so in ggml-rpc's
// translation units GGML_ABORT / GGML_ASSERT call llama_mtp_rpc_abort (failsafe.cpp) instead:
//   * the connect/handshake failures throw std::runtime_error (caught by our loader);
//   * the broken-connection failure is recorded against the server's address and *returns*:
//     the dispatcher then completes the message as if it had been answered, so the waiting
//     thread goes on; the results of that step are garbage and the engine discards them
//     (it checks llama_mtp_rpc_failures() after every decode and never decodes again on a
//     broken connection);
//   * every other message (internal asserts, server-side checks) goes to ggml_abort as before.
// The socket calls of transport.cpp are wrapped to learn which server a failing socket talks
// to, and to bound how long a connection to a vanished host can hang (TCP keepalive and
// TCP_USER_TIMEOUT, see failsafe.cpp).
#pragma once

#include "failsafe_api.h"
#include "ggml.h"  // #pragma once: GGML_ABORT is redefined below, after ggml.h's own definition

#undef GGML_ABORT
#define GGML_ABORT(...) llama_mtp_rpc_abort(__FILE__, __LINE__, __VA_ARGS__)

// In transport.cpp only (CMakeLists.txt defines LLAMA_MTP_WRAP_SOCKETS for that file): it
// makes the socket calls; ggml-rpc.cpp has members of those names. The RDMA transports (objects
// with send/recv members too) are switched off in this build (GGML_RPC_RDMA=OFF).
#if !defined(_WIN32) && !defined(GGML_RPC_RDMA) && defined(LLAMA_MTP_WRAP_SOCKETS)
#define send llama_mtp_rpc_send
#define recv llama_mtp_rpc_recv
#endif
