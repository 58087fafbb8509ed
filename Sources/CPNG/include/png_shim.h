#pragma once
// A small C layer over libpng. libpng reports errors by longjmp; every libpng call lives inside
// these functions, which do the setjmp themselves, so no longjmp ever crosses a Swift frame.
// Each function returns 0 on success or -1 on failure with a message in `err`.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A decoded PNG: rows packed without padding, samples interleaved, 16-bit samples in host order.
typedef struct {
    uint32_t width;
    uint32_t height;
    int32_t channels;   // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (palette and tRNS are expanded)
    int32_t bit_depth;  // 8 or 16 (1/2/4-bit images are expanded to 8)
    uint8_t *pixels;    // malloc'd; release with forge_png_free
} forge_png_image;

/// Reads only the header: size, channels after expansion and bit depth after expansion.
int forge_png_read_header(const uint8_t *data, size_t length, uint32_t *width, uint32_t *height,
                          int32_t *channels, int32_t *bit_depth, char *err, size_t err_capacity);

/// Decodes a whole PNG held in memory. Refuses, before allocating pixel memory, images whose
/// width × height exceeds `max_pixels`.
int forge_png_decode(const uint8_t *data, size_t length, uint64_t max_pixels,
                     forge_png_image *out, char *err, size_t err_capacity);

/// Encodes 8-bit gray (1), gray+alpha (2), RGB (3) or RGBA (4) pixels to a PNG in memory.
/// `*out` is malloc'd; release with forge_png_free.
int forge_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int32_t channels,
                     int32_t compression_level, uint8_t **out, size_t *out_length,
                     char *err, size_t err_capacity);

void forge_png_free(void *pointer);

#ifdef __cplusplus
}
#endif
