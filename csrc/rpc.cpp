#include "rpc.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "errors.h"
#include "ggml-rpc.h"

#if defined(LLAMA_MTP_RPC_FAILSAFE)
#include "ggml_rpc/failsafe_api.h"
#endif

#if !defined(_WIN32)
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#endif

namespace llama_mtp {
namespace {

ggml_backend_reg_t rpc_reg() {
    ggml_backend_reg_t reg = ggml_backend_reg_by_name("RPC");
    if (reg == nullptr) {
        throw ModelLoadError("this llama-mtp build has no RPC backend (ggml-rpc); reinstall llama-mtp");
    }
    return reg;
}

template <typename Fn>
Fn* rpc_proc(const char* name) {
    auto* fn = reinterpret_cast<Fn*>(ggml_backend_reg_get_proc_address(rpc_reg(), name));
    if (fn == nullptr) throw ModelLoadError(std::string("the RPC backend does not export ") + name);
    return fn;
}

// Seconds a connection attempt may take (the same knob bounds a dead connection, failsafe.cpp).
int connect_timeout_s() {
    int t = 10;
    if (const char* env = std::getenv("LLAMA_MTP_RPC_TIMEOUT")) {
        const int v = std::atoi(env);
        if (v > 0) t = std::min(v, 10);
    }
    return t;
}

void split_endpoint(const std::string& endpoint, std::string& host, int& port) {
    const size_t colon = endpoint.rfind(':');
    const std::string usage = "RPC server '" + endpoint + "' must be given as host:port (e.g. 127.0.0.1:50052)";
    if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()) throw InvalidArgument(usage);
    host = endpoint.substr(0, colon);
    if (host.find(':') != std::string::npos || host.find('[') != std::string::npos) {
        throw InvalidArgument(usage + "; ggml-rpc has no IPv6 support");
    }
    const std::string p = endpoint.substr(colon + 1);
    if (p.find_first_not_of("0123456789") != std::string::npos || p.size() > 5) throw InvalidArgument(usage);
    port = std::stoi(p);
    if (port < 1 || port > 65535) throw InvalidArgument(usage + " (port 1-65535)");
}

#if !defined(_WIN32)
// The IPv4 address ggml-rpc will connect to (it resolves with gethostbyname, AF_INET only).
std::string resolve_ipv4(const std::string& endpoint, const std::string& host) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || res == nullptr) {
        throw ModelLoadError("cannot reach RPC server '" + endpoint + "': cannot resolve '" + host +
                             "' (" + gai_strerror(rc) + ")");
    }
    char buf[INET_ADDRSTRLEN] = {0};
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof(buf));
    freeaddrinfo(res);
    return buf;
}

// A bounded TCP connect before ggml-rpc's own, which has no timeout (an unroutable host holds
// it for the kernel's SYN retries, ~2 minutes) and reports no reason.
void probe(const std::string& endpoint, const std::string& ip, int port) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return;  // let ggml-rpc try and report
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
    int err = 0;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            const int timeout = connect_timeout_s();
            const int n = poll(&p, 1, timeout * 1000);
            if (n == 0) {
                close(fd);
                throw ModelLoadError("cannot reach RPC server '" + endpoint + "': no answer within " +
                                     std::to_string(timeout) + " s (is the host up and the port open?)");
            }
            socklen_t len = sizeof(err);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        }
    }
    close(fd);
    if (err != 0) {
        throw ModelLoadError("cannot reach RPC server '" + endpoint + "': " + std::strerror(err) +
                             " (start one there: `llama-mtp rpc-server --host HOST --port " +
                             std::to_string(port) + "`, or llama.cpp's rpc-server)");
    }
}
#endif

}  // namespace

std::string rpc_protocol_version() {
    return std::to_string(RPC_PROTO_MAJOR_VERSION) + "." + std::to_string(RPC_PROTO_MINOR_VERSION) + "." +
           std::to_string(RPC_PROTO_PATCH_VERSION);
}

RpcServer connect_rpc_server(const std::string& endpoint) {
    std::string host;
    int port = 0;
    split_endpoint(endpoint, host, port);
    RpcServer server;
    server.endpoint = endpoint;
#if !defined(_WIN32)
    const std::string ip = resolve_ipv4(endpoint, host);
    server.peer = ip + ":" + std::to_string(port);
    probe(endpoint, ip, port);
#else
    server.peer = endpoint;
#endif
    using AddServer = ggml_backend_reg_t(const char*);
    AddServer* add_server = rpc_proc<AddServer>("ggml_backend_rpc_add_server");
    ggml_backend_reg_t reg = nullptr;
    try {
        reg = add_server(endpoint.c_str());
    } catch (const std::exception& e) {
        // csrc/ggml_rpc/failsafe.cpp turns ggml-rpc's connect / handshake aborts into this.
        throw ModelLoadError("cannot use RPC server '" + endpoint + "': " + e.what() +
                             " (it closed the connection, or speaks another protocol version: this build speaks "
                             "ggml-rpc " + rpc_protocol_version() + ")");
    }
    if (reg == nullptr || ggml_backend_reg_dev_count(reg) == 0) {
        throw ModelLoadError("RPC server '" + endpoint + "' offers no devices");
    }
    for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); ++i) {
        server.devices.push_back(ggml_backend_reg_dev_get(reg, i));
    }
    return server;
}

void serve_rpc(const std::string& host, int port, const std::string& cache_dir, int n_threads,
               const std::vector<std::string>& device_names) {
    if (port < 1 || port > 65535) throw InvalidArgument("port must be in 1-65535");
    std::vector<ggml_backend_dev_t> devices;
    for (const auto& name : device_names) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
        if (dev == nullptr) {
            std::string known;
            for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
                known += (known.empty() ? "" : ", ") + std::string(ggml_backend_dev_name(ggml_backend_dev_get(i)));
            }
            throw InvalidArgument("unknown device '" + name + "' (this machine has: " + known + ")");
        }
        devices.push_back(dev);
    }
    if (devices.empty()) {  // llama.cpp's rpc-server: the accelerators, else the CPU
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            const auto type = ggml_backend_dev_type(dev);
            if (type != GGML_BACKEND_DEVICE_TYPE_CPU && type != GGML_BACKEND_DEVICE_TYPE_ACCEL) devices.push_back(dev);
        }
    }
    if (devices.empty()) {
        if (ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)) devices.push_back(cpu);
    }
    if (devices.empty()) throw std::runtime_error("no device to serve");
    if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / 2));
    using StartServer = decltype(ggml_backend_rpc_start_server);
    StartServer* start = rpc_proc<StartServer>("ggml_backend_rpc_start_server");
    const std::string endpoint = host + ":" + std::to_string(port);
    start(endpoint.c_str(), cache_dir.empty() ? nullptr : cache_dir.c_str(), static_cast<size_t>(n_threads),
          devices.size(), devices.data());
    // ggml's server returns only when it cannot bind, or when accept() fails (a signal).
    throw std::runtime_error("the RPC server could not listen on " + endpoint +
                             " or stopped accepting (is the port in use, or the address not one of "
                             "this machine's?)");
}

uint64_t rpc_failures(const std::vector<std::string>& peers) {
    uint64_t n = 0;
#if defined(LLAMA_MTP_RPC_FAILSAFE) && !defined(_WIN32)
    for (const auto& p : peers) n += llama_mtp_rpc_failures(p.c_str());
#elif defined(LLAMA_MTP_RPC_FAILSAFE)
    // no socket wrappers on Windows, so no attribution: any broken connection counts
    if (!peers.empty()) n = llama_mtp_rpc_failures(nullptr);
#else
    (void)peers;
#endif
    return n;
}

std::string rpc_last_failure() {
#if defined(LLAMA_MTP_RPC_FAILSAFE)
    char buf[512];
    const size_t n = llama_mtp_rpc_last_failure(buf, sizeof(buf));
    return std::string(buf, n);
#else
    return {};
#endif
}

}  // namespace llama_mtp
