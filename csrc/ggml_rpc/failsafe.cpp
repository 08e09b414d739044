// Compiled into ggml-base (CMakeLists.txt). Why it exists: failsafe.h.
#include "failsafe_api.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "ggml-impl.h"

#if !defined(_WIN32)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#endif

namespace {

// ggml-rpc's message for a connection that broke (RPC_STATUS_ASSERT in ggml-rpc.cpp). Only this
// one returns; should upstream reword it, the failure aborts again, as upstream does (and
// tests/test_rpc.py's kill test fails).
constexpr const char* kBroken = "Remote RPC server crashed or returned malformed response";
// rpc_dispatcher::start's failures, on the thread that asked for the connection.
constexpr const char* kNoConnection[] = {"Failed to connect to", "RPC handshake failed for",
                                         "Failed to parse endpoint", "RPC transport initialization failed"};

std::mutex g_mutex;
std::unordered_map<std::string, uint64_t> g_failures;  // peer -> broken connections
uint64_t g_total = 0;
std::string g_last;

// The socket this thread last used, and the server it is connected to. A dispatcher thread
// owns exactly one socket for its whole life, so this names the server whose connection broke.
thread_local int t_fd = -1;
thread_local int t_local_port = -1;  // with t_fd: tells a new connection that reused the number
thread_local std::string t_peer;
thread_local bool t_reported = false;
// Set once this thread's connection broke: its later messages go nowhere without a word (ggml's
// transport would log an error for each one: a dispatcher keeps failing every message it has).
thread_local bool t_broken = false;

bool starts_with(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

#if !defined(_WIN32)
std::string peer_of(int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "an RPC server";
    char host[INET6_ADDRSTRLEN] = {0};
    if (addr.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
    }
    if (addr.ss_family == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
    }
    return "an RPC server";
}

// ggml-rpc sets no timeout: a host that vanishes (power, network) without closing the
// connection leaves recv() waiting forever. Keepalive probes find a dead peer while we wait
// for an answer, TCP_USER_TIMEOUT while our data stays unacknowledged; a busy but live server
// answers both from its kernel, so a long computation is never cut short.
// LLAMA_MTP_RPC_TIMEOUT (seconds, default 60; 0 leaves the socket as ggml made it).
void bound_dead_peer_time(int fd) {
    int timeout_s = 60;
    if (const char* env = std::getenv("LLAMA_MTP_RPC_TIMEOUT")) timeout_s = std::atoi(env);
    if (timeout_s <= 0) return;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
#if defined(TCP_KEEPIDLE) && defined(TCP_KEEPINTVL) && defined(TCP_KEEPCNT)
    int idle = timeout_s / 4 > 0 ? timeout_s / 4 : 1;
    int interval = idle;
    int count = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
#endif
#if defined(TCP_USER_TIMEOUT)
    unsigned int user_timeout_ms = static_cast<unsigned int>(timeout_s) * 1000u;
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
#endif
}

int local_port(int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return -1;
    if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
    return -1;
}

void remember(int fd) {
    // The same descriptor: the same connection, except on a broken one (checked before its
    // messages are dropped: a thread that opens a new connection may get the number back).
    if (fd == t_fd && (!t_broken || local_port(fd) == t_local_port)) return;
    t_fd = fd;
    t_local_port = local_port(fd);
    t_peer = peer_of(fd);
    t_reported = false;
    t_broken = false;
    bound_dead_peer_time(fd);
}
#endif

void record_broken(const std::string& message) {
    const std::string peer = t_peer.empty() ? std::string("an RPC server") : t_peer;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        g_failures[peer] += 1;
        g_total += 1;
        g_last = peer + ": " + message;
    }
    t_broken = true;
    // The dead dispatcher fails every later message too: say it once per connection.
    if (!t_reported) {
        t_reported = true;
        GGML_LOG_ERROR("RPC connection to %s broke (%s); llama-mtp fails the running requests\n",
                       peer.c_str(), message.c_str());
    }
}

}  // namespace

void llama_mtp_rpc_abort(const char* file, int line, const char* fmt, ...) {
    char message[1024];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    size_t n = std::strlen(message);
    while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == ' ')) message[--n] = '\0';

    if (std::strcmp(fmt, kBroken) == 0) {
        record_broken(message);
        return;
    }
    for (const char* prefix : kNoConnection) {
        if (starts_with(fmt, prefix)) throw std::runtime_error(message);
    }
    ggml_abort(file, line, "%s", message);
}

extern "C" {

#if !defined(_WIN32)
ssize_t llama_mtp_rpc_send(int fd, const void* buf, size_t len, int flags) {
    remember(fd);
    if (t_broken) return static_cast<ssize_t>(len);  // its answer, if any, reads as end of stream
#if defined(MSG_NOSIGNAL)
    flags |= MSG_NOSIGNAL;  // a closed peer is an error return, not SIGPIPE
#endif
    return ::send(fd, buf, len, flags);
}

ssize_t llama_mtp_rpc_recv(int fd, void* buf, size_t len, int flags) {
    remember(fd);
    if (t_broken) return 0;
    return ::recv(fd, buf, len, flags);
}
#endif

uint64_t llama_mtp_rpc_failures(const char* peer) {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (peer == nullptr) return g_total;
    auto it = g_failures.find(peer);
    return it == g_failures.end() ? 0 : it->second;
}

size_t llama_mtp_rpc_last_failure(char* buf, size_t size) {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (size == 0) return 0;
    const size_t n = std::min(size - 1, g_last.size());
    std::memcpy(buf, g_last.data(), n);
    buf[n] = '\0';
    return n;
}

}  // extern "C"
