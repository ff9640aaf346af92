// Stage "decode_latents" (docs/FORMAT.md 6) and the mask section (7).
#pragma once

#include "lotc_internal.h"
#include "lotc_kernels.h"
#include "lotc_networks.h"
#include "lotc_pool.h"

#include <functional>

namespace lotc::detail {

struct Unit {
    int grid, row0, row1;
};

// Units per substream, in file order (docs/FORMAT.md 6.4).
std::vector<std::vector<Unit>> substream_plan(const Config& c, int height, int width);

// Decodes every substream on the pool into out.latents (every size checked first). `coarse` (if
// set) runs as one more work item as soon as every grid but the full-resolution one is decoded.
// Returns the threads' summed seconds in substreams.
double decode_latents(const std::vector<std::vector<uint32_t>>& substreams, const Networks& n, const Config& c,
                      int height, int width, const Tables& tables, Decoded& out, WorkerPool& pool,
                      const Kernels& kernels, const std::function<void()>& coarse);

// The mask bits per synthesis layer (fan_out x fan_in, row-major).
std::vector<std::vector<uint8_t>> decode_mask(const std::vector<int64_t>& counts, const uint32_t* words, size_t n_words,
                                              const std::vector<LayerShape>& shapes);

}  // namespace lotc::detail
