// LotteryCodec format-v2 decoder core: plain C++17, no Python. Twin of decoder/reference.py;
// the byte-level spec is docs/FORMAT.md. Stage names follow the reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace lotc {

// Every malformed, truncated or unsupported input ends here (never exit, never a crash).
struct DecodeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// A valid file beyond a limit the caller set (decode's max_pixels).
struct LimitError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct FieldRange {
    const char* name;
    int64_t lo, hi;
    int64_t def;    // the default: version 4 headers send only the fields that differ from it
    int since = 2;  // the first format version whose header carries the field (older: 0)
};
// The config record's fields in header order with their allowed ranges and defaults (docs/FORMAT.md §3).
const std::vector<FieldRange>& config_fields();

// Frequency tables (docs/FORMAT.md §6.3) as cumulative frequencies, 256 edges per table.
struct Tables {
    // A row's 256 edges, then 16 unused: narrow tables are read around the mode (edge 127), and with
    // rows 1 KiB apart those lines would all fall in 4 of the L1 cache's 64 sets (measured: the
    // decoder's hottest load); 1088 bytes apart they spread over every set.
    static constexpr size_t kRowStride = 272;
    std::vector<uint32_t> cum;  // [8 * 48][kRowStride]
    std::vector<int16_t> mode;  // per row: the most frequent symbol, where a search walking from it starts
    // weights: the shipped (8, 48, 255) uint32 array (constriction weights w; frequency w + 1).
    static Tables from_weights(const uint32_t* weights, size_t count);
    // Reads and checks the shipped .npy file (its CRC-32 is pinned).
    static Tables from_npy_file(const std::string& path);
    // The same from the file's bytes (e.g. embedded in a library at build time).
    static Tables from_npy_bytes(const uint8_t* data, size_t size);
};

// What a file's header says, checked (magic, version, fields, sizes, both CRCs) without decoding.
struct Info {
    int version = 0, width = 0, height = 0, n_grids = 0;
    uint64_t latent_count = 0;       // latents in every grid together
    double macs_per_pixel = 0;       // decoding complexity (docs/PROFILE.md), as decoder/complexity.py counts it
    double kept_ratio = 0;           // kept synthesis weights / all of them
};
Info probe(const uint8_t* data, size_t size);

// Memory for the few large buffers a decode writes once (the image, the half-resolution planes):
// from 1 MiB on, 2 MiB-aligned and advised for transparent huge pages where Linux offers them, so
// their first touches fault once per 2 MiB instead of once per 4 KiB page. On a VM a fault costs
// about 2 us: at 768x512 the 4 KiB faults took a tenth of a one-thread decode.
void* large_allocate(size_t bytes);
void large_free(void* p, size_t bytes);
template <class T>
struct LargeAllocator {
    using value_type = T;
    LargeAllocator() = default;
    template <class U>
    LargeAllocator(const LargeAllocator<U>&) {}
    T* allocate(size_t n) {
        if (n > size_t(-1) / sizeof(T)) throw std::bad_alloc();
        return static_cast<T*>(large_allocate(n * sizeof(T)));
    }
    void deallocate(T* p, size_t n) { large_free(p, n * sizeof(T)); }
    // resize(n) leaves new elements uninitialised (assign(n, v) still fills): buffers that are
    // written before they are read would otherwise be touched twice.
    template <class U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
    bool operator==(const LargeAllocator&) const { return true; }
    bool operator!=(const LargeAllocator&) const { return false; }
};

struct Decoded {
    int width = 0, height = 0;
    std::vector<uint8_t, LargeAllocator<uint8_t>> rgb;  // H * W * 3 (empty when decode wrote to the caller's buffer)
    std::vector<std::vector<int8_t>> latents;         // per grid, row-major; values in [-64, 63]
    std::vector<std::pair<int, int>> grid_shapes;     // (rows, cols)
    const char* kernels = "";                        // the kernel table that ran (scalar, avx2, neon)
    double t_parse = 0, t_entropy = 0, t_upsampling = 0, t_modulation = 0, t_synthesis = 0;
};

// threads: substreams and row bands decoded in parallel; any count gives identical output.
// latents_only: stop after entropy decoding (for backends that run the rest elsewhere, e.g. a GPU).
// kernels: "auto" (the fastest table this CPU runs) or a table by name: "scalar" (always built),
// "avx2", "avx512", "neon"; latents are identical with every table, images within one level.
// max_pixels (> 0): a file declaring more pixels is refused before anything large is allocated.
// rgb (optional): where the image goes instead of Decoded::rgb, row y at rgb + y * rgb_stride (at
// least width * 3); the caller has checked it holds the header's size (probe). Saves a copy and
// the pages of a second image.
Decoded decode(const uint8_t* data, size_t size, const Tables& tables, int threads = 1, bool latents_only = false,
               const std::string& kernels = "auto", uint64_t max_pixels = 0, uint8_t* rgb = nullptr,
               size_t rgb_stride = 0);
// The name of the table decode would use for `kernels`; throws std::invalid_argument when unavailable.
const char* kernels_name(const std::string& kernels = "auto");
// Every table this build runs on this CPU, fastest first ("scalar" last).
std::vector<std::string> available_kernels();

}  // namespace lotc
