/* Decode a .lotc file to a binary PPM with liblotc's C API. Build against an installed lotc:
 *   cc decode.c $(pkg-config --cflags --libs lotc) -o decode     (or find_package(lotc) in CMake)
 */
#include <lotc.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s IN.lotc OUT.ppm\n", argv[0]); return 2; }
    FILE* f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char* data = malloc(size > 0 ? (size_t)size : 1);
    size_t got = fread(data, 1, (size_t)size, f);
    fclose(f);
    char msg[256];
    lotc_info info;
    uint8_t* rgb = NULL;
    if (lotc_decode_alloc(data, got, NULL, &rgb, &info, msg, sizeof msg) != LOTC_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], msg);
        free(data);
        return 1;
    }
    FILE* out = fopen(argv[2], "wb");
    fprintf(out, "P6\n%d %d\n255\n", info.width, info.height);
    fwrite(rgb, 3, (size_t)info.width * (size_t)info.height, out);
    fclose(out);
    printf("%s: %dx%d, %.0f MACs/pixel (%s)\n", argv[1], info.width, info.height, info.macs_per_pixel, lotc_version());
    lotc_free(rgb);
    free(data);
    return 0;
}
