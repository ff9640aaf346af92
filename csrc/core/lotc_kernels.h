// The decoder's hot loops behind one function table, chosen once at run time from the CPU's
// features (as dav1d does): a scalar table that every build has and that can be forced, AVX2+FMA
// on x86-64 (function-level target attributes, so the build never needs -mavx2 and never fails
// on a compiler or CPU without it), NEON on AArch64. Every table computes the same maths; the
// integer ARM gives identical results on all of them, the float stages agree to rounding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lotc {

// Float kernels work on runs of at most kChunk pixels. Every buffer they read or write holds
// kChunk floats past the last pixel that matters, so SIMD tables may run whole vectors over a
// partial run: lanes past n compute garbage that nobody reads.
constexpr int kChunk = 128;

// A float layer as lists of (input, weight) per output: the kept weights of a masked synthesis
// layer, or every weight of a dense one. `index` picks an entry of the caller's pointer array.
struct SparseLayer {
    int fan_out = 0;
    std::vector<uint32_t> start;  // fan_out + 1 offsets into index / value
    std::vector<uint16_t> index;
    std::vector<float> value;
    std::vector<float> bias;      // fan_out (zeros for the bias-free synthesis)
};

// The ARM's activations are fixed point with this many fraction bits: its inputs are latents * 2^8.
constexpr int kActFrac = 8;
// A layer of the integer ARM, outputs padded to a multiple of kArmLanes with zero weights.
constexpr int kArmLanes = 8;
// The config's widest ARM layer (a multiple of kArmLanes). Kernels may read inputs in whole
// blocks up to this many (the tail only ever meets zero weights): context and activation buffers
// hold at least kArmMaxWidth values.
constexpr int kArmMaxWidth = 64;
struct ArmLayer {
    int fan_in = 0, fan_out = 0, padded_out = 0;
    std::vector<int32_t> weight_t;  // [fan_in][padded_out]
    std::vector<int32_t> bias;      // padded_out: bias * 2^ACT_FRAC + rounding half
    // The same weights as int16 pairs [fan_in / 2 rounded up][padded_out][2] for pairwise
    // multiply-add instructions, and how the layer's inputs fit 16 bits (proven at parse time):
    enum class Inputs { kInt16, kSplit15, kInt32 } inputs = Inputs::kInt32;
    // kInt16: |x| < 2^15. kSplit15: 0 <= x < 2^30, used as hi * 2^15 + lo with hi, lo < 2^15.
    // The pairs exist whenever the weights fit 16 bits: a layer whose inputs are not proven to fit
    // (ReLU outputs, >= 0) still takes the one-pass 16-bit path for a context whose inputs all
    // happen to be below 2^15, which is nearly every context.
    std::vector<int16_t> weight_pairs;
};
enum class Activation { kLinear, kGelu };

struct Kernels {
    const char* name;
    // out[o][0..n) = act(bias[o] + sum_k value[k] * in[index[k]][0..n)) for every output o.
    void (*mac)(const float* const* in, const SparseLayer& layer, float* const* out, int n, Activation act);
    // rgb[3x + c] = round(255 * sigmoid(2 z[c][x])) for x < n: the output transform (tanh(z) + 1) / 2.
    void (*to_rgb8)(const float* const* z, int n, uint8_t* rgb);
    // The whole ARM on one context: per layer y[o] = (bias[o] + sum_i w[i][o] x[i]) >> shift, ReLU
    // between layers, exact int32; mu_ls gets the last layer's two outputs.
    void (*arm)(const int32_t* context, const ArmLayer* layers, int n_layers, int shift, int32_t* mu_ls);
    // The same ARM (same integers) for a network whose layers all have at most kArmLanes inputs and
    // outputs, on a context given as bytes (byte k: latent k, two's complement; zero past the
    // context): the activations stay in one register. nullptr where a table has no such variant.
    void (*arm_small)(uint64_t context, const ArmLayer* layers, int n_layers, int shift, int32_t* mu_ls);
};

const Kernels& scalar_kernels();
const Kernels* avx2_kernels();    // nullptr where not compiled in or the CPU lacks AVX2+FMA
const Kernels* avx512_kernels();  // nullptr where not compiled in or the CPU lacks AVX-512F
const Kernels* neon_kernels();    // nullptr where not compiled in
// A table by name ("auto": the fastest this CPU runs; "scalar", "avx2", "avx512", "neon"); throws
// std::invalid_argument for a name this build or CPU cannot run.
const Kernels& select_kernels(const std::string& name);

}  // namespace lotc
