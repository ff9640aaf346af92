// The range decoder every coded stream goes through (docs/FORMAT.md 5, 6.5, 7). Header-only:
// decode() is the serial path of every latent and must inline into the entropy loop.
#pragma once

#include "lotc_internal.h"

namespace lotc::detail {

// constriction's queue RangeDecoder (u32 words, u64 state, 24-bit precision).
struct RangeDecoder {
    const uint32_t* words;
    size_t n, next = 0;
    uint64_t lower = 0, range = ~uint64_t(0), point = 0;
    // Words read, those past the stream's end included (2 to start, 1 per refill), and symbols
    // decoded: finish() checks the stream ends where they do.
    size_t reads = 2, decoded = 0;
    RangeDecoder(const uint32_t* w, size_t count) : words(w), n(count) {
        int read = 0;
        while (read < 2 && next < n) { point = (point << 32) | words[next++]; ++read; }
        if (read == 1) point <<= 32;
    }
    // cum: symbols + 1 cumulative edges; returns the symbol. start: where to begin a linear walk
    // (the table's mode) or -1 for a binary search. Forced inline: GCC kept it a call (its
    // failure paths make it look big), which put the coder's state in memory on every latent.
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((always_inline))
#endif
    int decode(const uint32_t* cum, int symbols, int start = -1) {
        // constriction computes quantile = (point - lower) / scale and picks the largest s with
        // cum[s] <= quantile. For an integer cum[s] that is scale * cum[s] <= point - lower, so
        // the search compares products instead: no 64-bit division on the serial path (the
        // products stay below 2^64: scale < 2^40, cum <= 2^24).
        const uint64_t scale = range >> kPrecision;
        const uint64_t offset = point - lower;
        if (offset >= (scale << kPrecision)) fail("corrupt entropy-coded data (invalid quantile)");
        int s = start;
        if (s >= 0) {  // narrow tables: the symbol is almost always the mode or a neighbour
            if (scale * cum[s] > offset) {
                do --s; while (scale * cum[s] > offset);  // cum[0] = 0 stops it
            } else {
                while (scale * cum[s + 1] <= offset) ++s;  // cum[symbols] = 2^24 stops it
            }
        } else {  // branch-free bisection: the symbol is data-dependent, branches would mispredict
            s = 0;
            for (int step = 128; step > 0; step >>= 1) {
                int probe = s + step;
                s = (probe <= symbols && scale * cum[probe] <= offset) ? probe : s;
            }
        }
        lower += scale * cum[s];
        range = scale * (uint64_t(cum[s + 1]) - cum[s]);
        if (range < (uint64_t(1) << 32)) {
            lower <<= 32;
            range <<= 32;
            point <<= 32;
            if (next < n) point |= words[next++];
            // A stream's encoder emitted at least reads - 1 words: reading further past the end
            // is a forged stream, stopped here rather than decoded from zeros (finish() would
            // refuse it anyway, but only after its last symbol).
            if (++reads > n + 1) fail("entropy-coded stream read past its end (corrupt or forged)");
        }
        ++decoded;
        return s;
    }
    // docs/FORMAT.md 5, "Stream end": the state follows from the decoded symbols alone, so the
    // encoder's output is known: a word per refill, then its seal, the top word of
    // lower + 2^32 - 1 and, when that is also the top word of lower + range, a zero word. No
    // symbol, no word. Anything else is junk or a forgery.
    void finish(const char* what) const {
        bool exact = n == 0;
        if (decoded) {
            const uint64_t point = lower + 0xFFFFFFFFull;
            const bool zero_word = ((lower + range) >> 32) == (point >> 32);
            exact = n == reads - 1 + zero_word && words[reads - 2] == uint32_t(point >> 32) &&
                    (!zero_word || words[n - 1] == 0);
        }
        if (!exact) fail(std::string(what) + ": its words do not end where its symbols do");
    }
};

}  // namespace lotc::detail
