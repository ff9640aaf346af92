/* lotc: the LotteryCodec decoder as a C library (C99; no C++ types or exceptions cross it).
 *
 * Every function returns a lotc_status; on failure it writes a one-line, NUL-terminated message
 * into the caller's buffer (message may be NULL). Nothing prints, exits or aborts. Decodes are
 * independent: any number may run at once from different threads. The frequency tables are
 * inside the library; no data file is needed at run time.
 *
 *     lotc_info info;
 *     char msg[256];
 *     if (lotc_probe(data, size, &info, msg, sizeof msg) != LOTC_OK) { ... msg ... }
 *     uint8_t* rgb = malloc((size_t)info.width * info.height * 3);
 *     size_t row = (size_t)info.width * 3;
 *     lotc_decode(data, size, NULL, rgb, row * info.height, row, &info, NULL, msg, sizeof msg);
 */
#ifndef LOTC_H
#define LOTC_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define LOTC_API
#else
#define LOTC_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The library's ABI version (the shared library's SONAME is liblotc.so.LOTC_ABI_VERSION). */
#define LOTC_ABI_VERSION 1

typedef enum lotc_status {
    LOTC_OK = 0,
    LOTC_ERROR_ARGUMENT = 1, /* a NULL pointer, an unknown option value, a buffer too small */
    LOTC_ERROR_FORMAT = 2,   /* not a valid file: corrupt, truncated, forged, unsupported version */
    LOTC_ERROR_LIMIT = 3,    /* a valid file above the caller's max_pixels */
    LOTC_ERROR_MEMORY = 4,   /* an allocation failed */
    LOTC_ERROR_INTERNAL = 5  /* anything else (a bug: please report it with the file) */
} lotc_status;

/* What a file's header says (lotc_probe checks the header and both CRCs, decodes nothing). */
typedef struct lotc_info {
    int format_version;
    int width, height;
    int n_grids;
    uint64_t latent_count;  /* latents in all grids together: lotc_decode_latents' output size */
    double macs_per_pixel;  /* decoding complexity, counted as docs/PROFILE.md says */
    double kept_ratio;      /* kept synthesis weights / all of them */
} lotc_info;

typedef struct lotc_options {
    int threads;            /* decoding threads; 0: every core. Any count gives the same image. */
    const char* kernels;    /* NULL or "auto" (the fastest this CPU runs), "scalar", "avx2", "avx512", "neon" */
    uint64_t max_pixels;    /* 0: the format's own limit (2^26); else a file with more pixels is refused
                               (LOTC_ERROR_LIMIT) before any large allocation */
} lotc_options;

/* Seconds per stage of the last decode (the stage names of every backend), and the kernel table. */
typedef struct lotc_stats {
    double parse, entropy, upsampling, modulation, synthesis;
    char kernels[16];
} lotc_stats;

/* "lotc <version>" of this library. */
LOTC_API const char* lotc_version(void);

/* The defaults: every core, the fastest kernels, no limit beyond the format's. */
LOTC_API void lotc_options_default(lotc_options* options);

LOTC_API lotc_status lotc_probe(const uint8_t* data, size_t size, lotc_info* info, char* message,
                                size_t message_size);

/* Decodes into rgb: height rows of width * 3 bytes (R, G, B), row r at rgb + r * stride
 * (stride >= width * 3; rgb_size >= (height - 1) * stride + width * 3). options, info and stats
 * may be NULL. The rows are written in place as they are reconstructed (no second image, no copy);
 * bytes between rows are not touched. A file refused as invalid or beyond a limit leaves rgb as it
 * was (every check comes before the first row); after any other failure its rows are unspecified. */
LOTC_API lotc_status lotc_decode(const uint8_t* data, size_t size, const lotc_options* options, uint8_t* rgb,
                                 size_t rgb_size, size_t stride, lotc_info* info, lotc_stats* stats,
                                 char* message, size_t message_size);

/* The same into a buffer the library allocates (width * 3 bytes per row, no padding), released
 * with lotc_free. */
LOTC_API lotc_status lotc_decode_alloc(const uint8_t* data, size_t size, const lotc_options* options, uint8_t** rgb,
                                       lotc_info* info, char* message, size_t message_size);
LOTC_API void lotc_free(void* p);

/* The entropy-decoded latents only (conformance: identical on every platform), grid after grid,
 * each row-major: latent_count values (lotc_info) into out. */
LOTC_API lotc_status lotc_decode_latents(const uint8_t* data, size_t size, const lotc_options* options,
                                         int8_t* out, size_t out_count, char* message, size_t message_size);

#ifdef __cplusplus
}
#endif
#endif
