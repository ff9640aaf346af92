// Stage "read_networks" (docs/FORMAT.md 5): the twin of decoder/format.py read_networks.
#include "lotc_networks.h"

#include "lotc_range_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace lotc::detail {
namespace {

std::vector<uint32_t> uniform_cum(int symbols) {
    std::vector<uint32_t> cum(size_t(symbols) + 1);
    for (int i = 0; i <= symbols; ++i) cum[size_t(i)] = uint32_t((uint64_t(i) << kPrecision) / uint64_t(symbols));
    return cum;
}

// One sent tensor (docs/FORMAT.md §5): its table, then its values, each escaped value followed by
// the digits of |v| - 127.
std::vector<int64_t> read_tensor(RangeDecoder& dec, const Tables& tables, size_t n, int64_t limit,
                                 const char* module) {
    static const std::vector<uint32_t> scale_cum = uniform_cum(kNetScaleSymbols);
    static const std::vector<uint32_t> digit_cum = uniform_cum(kEscapeSymbols);
    std::vector<int64_t> out(n);
    if (!n) return out;
    const int s = dec.decode(scale_cum.data(), kNetScaleSymbols);
    if (s >= kScales) fail(std::string(module) + " tensor table above 47");
    const uint32_t* cum = tables.cum.data() + size_t(s) * Tables::kRowStride;  // mu fraction 0
    for (auto& x : out) {
        int64_t v = dec.decode(cum, kSymbols) - kResidualMax;
        if (v == kResidualMax || v == -kResidualMax) {
            int64_t excess = 0;
            for (int d = 0;; ++d) {
                if (d == kMaxEscapeDigits) fail(std::string(module) + " parameter escape too long");
                const int digit = dec.decode(digit_cum.data(), kEscapeSymbols);
                excess |= int64_t(digit & ((1 << kEscapeDigitBits) - 1)) << (kEscapeDigitBits * d);
                if (!(digit >> kEscapeDigitBits)) break;
            }
            v += v > 0 ? excess : -excess;
        }
        if (v > limit || v < -limit) fail(std::string(module) + " parameter out of range");
        x = v;
    }
    return out;
}

}  // namespace

Networks read_networks(const uint8_t* data, size_t size, const Config& c, const Tables& tables) {
    const std::vector<uint32_t> words = section_words(data, size);
    RangeDecoder dec(words.data(), words.size());
    Networks n;
    std::vector<int> dims{int(c.arm_inputs())};
    for (int i = 0; i < c.arm_layers; ++i) dims.push_back(int(c.arm_width));
    dims.push_back(2);
    for (size_t l = 0; l + 1 < dims.size(); ++l) n.arm_shape.push_back({dims[l], dims[l + 1]});
    if (c.arm_stabiliser) n.arm_shape.push_back({dims[0], 2});  // sent after the layers
    for (const LayerShape& s : n.arm_shape) {
        n.arm_w.push_back(read_tensor(dec, tables, size_t(s.fan_in) * s.fan_out, kArmParamMax, "arm"));
        n.arm_b.push_back(read_tensor(dec, tables, size_t(s.fan_out), kArmParamMax, "arm"));
    }
    int T = int(c.ups_kernel_size / 2);
    float ups_step = std::ldexp(1.0f, -int(c.ups_step_exp));
    for (int64_t q : read_tensor(dec, tables, size_t(4 * T * T), kNetValueMax, "ups"))
        n.ups.push_back(float(q) * ups_step);
    size_t mw = size_t(c.mod_width), mo = size_t(c.mod_out), L = size_t(c.n_grids);
    const size_t sizes[8] = {mw * L, mw, mo * mw, mo, mo * mo * 9, mo, mo * mo * 9, mo};
    for (int i = 0; i < 8; ++i) {
        float step = std::ldexp(1.0f, -int(i % 2 ? c.mod_bias_step_exp : c.mod_weight_step_exp));
        std::vector<float> t;
        for (int64_t q : read_tensor(dec, tables, sizes[i], kNetValueMax, "mod")) t.push_back(float(q) * step);
        n.mod.push_back(std::move(t));
    }
    dec.finish("networks section");
    // The weights the decoder multiplies (decoder/entropy.py IntArm.effective): a residual hidden
    // layer's skip is 2^frac added to its diagonal (one accumulator, exact).
    const size_t chain = size_t(c.arm_layers) + 1;
    if (c.arm_residual)
        for (size_t l = 0; l + 1 < chain; ++l)
            for (int o = 0; o < n.arm_shape[l].fan_out; ++o)
                n.arm_w[l][size_t(o) * n.arm_shape[l].fan_in + o] += int64_t(1) << c.arm_frac_bits;
    // Overflow bound (docs/FORMAT.md §5): every int32 accumulator provably fits. The stabiliser
    // reads the ARM's inputs, as the first layer does.
    int64_t bound = c.latent_bound << kActFrac;
    std::vector<int64_t> input_bound;  // per layer: |input| <= this
    for (size_t l = 0; l < n.arm_w.size(); ++l) {
        if (l == chain) bound = c.latent_bound << kActFrac;
        input_bound.push_back(bound);
        int64_t worst = 0;
        for (int o = 0; o < n.arm_shape[l].fan_out; ++o) {
            int64_t acc = (std::llabs(n.arm_b[l][o]) << kActFrac) + (int64_t(1) << (c.arm_frac_bits - 1));
            for (int i = 0; i < n.arm_shape[l].fan_in; ++i)
                acc += std::llabs(n.arm_w[l][size_t(o) * n.arm_shape[l].fan_in + i]) * bound;
            worst = std::max(worst, acc);
        }
        if (worst > INT32_MAX) fail("ARM parameters could overflow a 32-bit accumulator");
        bound = worst >> c.arm_frac_bits;
    }
    // Proven above: every product and partial sum fits in int32, so the kernels use int32 lanes.
    const int32_t half = int32_t(1) << (c.arm_frac_bits - 1);
    for (size_t l = 0; l < n.arm_w.size(); ++l) {
        ArmLayer a;
        a.fan_in = n.arm_shape[l].fan_in;
        a.fan_out = n.arm_shape[l].fan_out;
        a.padded_out = (a.fan_out + kArmLanes - 1) / kArmLanes * kArmLanes;
        a.weight_t.assign(size_t(a.fan_in) * a.padded_out, 0);
        a.bias.assign(size_t(a.padded_out), 0);
        bool weights16 = true;
        for (int o = 0; o < a.fan_out; ++o) {
            a.bias[o] = int32_t(n.arm_b[l][o] * (int64_t(1) << kActFrac)) + half;
            for (int i = 0; i < a.fan_in; ++i) {
                const int64_t w = n.arm_w[l][size_t(o) * a.fan_in + i];
                a.weight_t[size_t(i) * a.padded_out + o] = int32_t(w);
                weights16 = weights16 && w >= -32767 && w <= 32767;
            }
        }
        if (l == chain) {  // the stabiliser: run by the entropy decoder's own loop
            n.arm_stabiliser = std::move(a);
            continue;
        }
        // Layer 0 reads latents * 2^ACT_FRAC (signed, < 2^15); later layers read ReLU outputs (>= 0).
        if (weights16 && input_bound[l] < (int64_t(1) << 15))
            a.inputs = ArmLayer::Inputs::kInt16;
        else if (weights16 && l > 0 && input_bound[l] < (int64_t(1) << 30) && a.fan_in >= 16)
            a.inputs = ArmLayer::Inputs::kSplit15;  // narrower layers: the split costs more than it saves
        if (weights16) {
            a.weight_pairs.assign(size_t((a.fan_in + 1) / 2) * a.padded_out * 2, 0);
            for (int i = 0; i < a.fan_in; ++i)
                for (int o = 0; o < a.fan_out; ++o)
                    a.weight_pairs[(size_t(i / 2) * a.padded_out + o) * 2 + (i & 1)] =
                        int16_t(a.weight_t[size_t(i) * a.padded_out + o]);
        }
        n.arm.push_back(std::move(a));
    }
    return n;
}

}  // namespace lotc::detail
