// llama.cpp's RPC backend (ggml-rpc): connecting to rpc-servers, running one, and what became
// of the connections. All protocol work is ggml-rpc's; we only call its entry points (found
// through the "RPC" backend registry, so that the static and the loadable-backend builds work
// alike).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ggml-backend.h"

namespace llama_mtp {

// One connected server and the devices it offers (usually one).
struct RpcServer {
    std::string endpoint;  // as given: "host:port"
    std::string peer;      // the address connected to, "a.b.c.d:port" (failure records use it)
    std::vector<ggml_backend_dev_t> devices;
};

// The protocol version this build speaks (ggml-rpc.h), e.g. "7.0.0".
std::string rpc_protocol_version();

// Connects to `endpoint` and returns its devices, without registering them process-wide (as
// llama.cpp's --rpc does): only models given the server use it. Throws InvalidArgument for a
// malformed endpoint and ModelLoadError, naming the server, when it cannot be reached, does not
// answer the handshake, or speaks another protocol version.
RpcServer connect_rpc_server(const std::string& endpoint);

// Serves ggml-rpc clients on host:port (ggml_backend_rpc_start_server: one client at a time,
// forever). `device_names` empty: the accelerators, else the CPU (as llama.cpp's rpc-server).
// `cache_dir` empty: no tensor cache. Returns only if it could not start; throws then.
void serve_rpc(const std::string& host, int port, const std::string& cache_dir, int n_threads,
               const std::vector<std::string>& device_names);

// Broken connections recorded so far to any of `peers` (csrc/ggml_rpc/failsafe.*).
uint64_t rpc_failures(const std::vector<std::string>& peers);
// The last broken connection, "a.b.c.d:port: reason" ("" if none).
std::string rpc_last_failure();

}  // namespace llama_mtp
