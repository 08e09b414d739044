// Cache-line-aligned array new for the code linked into this module (ggml's CPU backend
// included).
//
// Why: ggml's CPU backend allocates its per-graph work buffer with a plain
// `new uint8_t[work_size]` (ggml-cpu.cpp), which glibc aligns to 16 bytes only. The
// flash-attention kernel (`ggml_compute_forward_flash_attn_ext_tiled`) keeps its Q/K/V/KQ tiles
// in that buffer and walks them with 64-byte AVX-512 loads and stores; when the buffer starts
// off a cache line, every one of them straddles two lines. Measured on the project machine
// (2,061-token prompt, -t 2, perf samples of the kernel relative to the Q4_K GEMM in the same
// run): the kernel costs ~25 % more with the buffer at 16/48 bytes past a cache line than at
// any 64-byte boundary (page offsets 0x000, 0x040, 0x800, 0xa40 alike), which made an
// 8,351-token prompt ~4 % slower than llama-server (benches/results/prompt-gap-8k.md).
//
// Only array new is replaced, and only where the C library's free() accepts memory from
// aligned_alloc (C11/POSIX): the default operator delete[] ends in free(), so arrays from this
// operator and from libstdc++'s may be deleted by either. Windows' CRT needs _aligned_free for
// aligned memory, so there the default stays. The module binds its own calls to it at link
// time (-Bsymbolic-functions); Python loads extension modules with RTLD_LOCAL, so other
// libraries do not bind to it (were the module loaded RTLD_GLOBAL, their arrays would merely
// come aligned: free() still releases them). A portable Linux build links this file into each
// ggml-cpu backend library as well.

// Sanitizer builds (LLAMA_MTP_SANITIZE) keep the default: AddressSanitizer tracks new[] / delete[]
// pairs, and aligned_alloc + the default delete[] would be reported as a mismatch.
#if !defined(_WIN32) && !defined(LLAMA_MTP_SANITIZE_BUILD)

#include <cstdlib>
#include <new>

namespace {

constexpr std::size_t kCacheLine = 64;

void* aligned_array(std::size_t size) noexcept {
    // aligned_alloc wants a multiple of the alignment; 0 bytes still gets a unique pointer
    const std::size_t rounded = (size + kCacheLine - 1) / kCacheLine * kCacheLine;
    if (rounded < size) return nullptr;  // overflow
    return std::aligned_alloc(kCacheLine, rounded == 0 ? kCacheLine : rounded);
}

}  // namespace

void* operator new[](std::size_t size) {
    for (;;) {
        if (void* p = aligned_array(size)) return p;
        std::new_handler handler = std::get_new_handler();
        if (!handler) throw std::bad_alloc();
        handler();
    }
}

void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return ::operator new[](size);
    } catch (...) {
        return nullptr;
    }
}

#endif  // !_WIN32 && !LLAMA_MTP_SANITIZE_BUILD
