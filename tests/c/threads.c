/* liblotc's thread-safety: N decodes of one file at once, from N threads, each with its own
 * buffer; every image must equal a lone decode's. Usage: threads FILE N */
#include <lotc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char* data;
static size_t size;
static lotc_info info;

static void* work(void* out) {
    char msg[256];
    lotc_options o;
    lotc_options_default(&o);
    o.threads = 2;
    size_t row = (size_t)info.width * 3;
    if (lotc_decode(data, size, &o, out, row * (size_t)info.height, row, NULL, NULL, msg, sizeof msg) != LOTC_OK) {
        fprintf(stderr, "%s\n", msg);
        return (void*)1;
    }
    return NULL;
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* f = fopen(argv[1], "rb");
    fseek(f, 0, SEEK_END);
    size = (size_t)ftell(f);
    rewind(f);
    data = malloc(size);
    if (fread(data, 1, size, f) != size) return 2;
    fclose(f);
    char msg[256];
    if (lotc_probe(data, size, &info, msg, sizeof msg) != LOTC_OK) { fprintf(stderr, "%s\n", msg); return 1; }
    int n = atoi(argv[2]);
    size_t bytes = (size_t)info.width * info.height * 3;
    unsigned char* lone = malloc(bytes);
    if (work(lone)) return 1;
    pthread_t t[64];
    unsigned char* out[64];
    for (int i = 0; i < n; ++i) { out[i] = malloc(bytes); pthread_create(&t[i], NULL, work, out[i]); }
    int bad = 0;
    for (int i = 0; i < n; ++i) {
        void* r;
        pthread_join(t[i], &r);
        bad |= r != NULL || memcmp(out[i], lone, bytes) != 0;
    }
    /* errors are values: a NULL buffer, a too-small stride, a truncated file, a pixel cap */
    unsigned char one[3];
    lotc_options cap;
    lotc_options_default(&cap);
    cap.max_pixels = 1;
    bad |= lotc_decode(data, size, NULL, NULL, 0, 0, NULL, NULL, msg, sizeof msg) != LOTC_ERROR_ARGUMENT;
    bad |= lotc_decode(data, size, NULL, lone, bytes, 1, NULL, NULL, msg, sizeof msg) != LOTC_ERROR_ARGUMENT;
    bad |= lotc_probe(data, size / 2, &info, msg, sizeof msg) != LOTC_ERROR_FORMAT || !msg[0];
    bad |= lotc_decode(data, size, &cap, one, sizeof one, 3, NULL, NULL, msg, sizeof msg) != LOTC_ERROR_LIMIT;
    /* rows go straight into the caller's buffer: the bytes between rows stay as they were, and a
     * refused file (here a payload byte flipped, so its CRC fails) leaves every byte as it was */
    size_t row = (size_t)info.width * 3, stride = row + 5, padded_size = stride * (size_t)info.height;
    unsigned char* padded = malloc(padded_size);
    memset(padded, 0xAB, padded_size);
    bad |= lotc_decode(data, size, NULL, padded, padded_size, stride, NULL, NULL, msg, sizeof msg) != LOTC_OK;
    for (int y = 0; y < info.height; ++y) {
        bad |= memcmp(padded + y * stride, lone + y * row, row) != 0;
        for (size_t x = row; x < stride; ++x) bad |= padded[y * stride + x] != 0xAB;
    }
    memset(padded, 0xAB, padded_size);
    data[size - 5] ^= 1;
    bad |= lotc_decode(data, size, NULL, padded, padded_size, stride, NULL, NULL, msg, sizeof msg) != LOTC_ERROR_FORMAT;
    data[size - 5] ^= 1;
    for (size_t i = 0; i < padded_size; ++i) bad |= padded[i] != 0xAB;
    printf("%d decodes at once: %s\n", n, bad ? "MISMATCH" : "identical");
    return bad;
}
