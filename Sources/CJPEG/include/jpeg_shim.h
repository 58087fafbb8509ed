#pragma once
// A small C layer over libjpeg-turbo. libjpeg reports fatal errors through error_exit, which we
// turn into a longjmp back into these functions; no longjmp ever crosses a Swift frame.
// Each function returns 0 on success or -1 on failure with a message in `err`.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A decoded JPEG: 8-bit samples, rows packed, 1 channel (gray) or 3 (RGB).
typedef struct {
    uint32_t width;
    uint32_t height;
    int32_t channels;
    uint8_t *pixels;  // malloc'd; release with forge_jpeg_free
} forge_jpeg_image;

/// Reads only the header: size and the channel count the decoder would produce (1 or 3).
int forge_jpeg_read_header(const uint8_t *data, size_t length, uint32_t *width, uint32_t *height,
                           int32_t *channels, char *err, size_t err_capacity);

/// Decodes a baseline or progressive JPEG held in memory to gray (1 channel, for grayscale
/// files) or RGB (3 channels, for YCbCr/RGB/CMYK/YCCK files). Refuses, before allocating pixel
/// memory, images whose width × height exceeds `max_pixels`. A file that ends early is an error
/// rather than libjpeg's default of a grey-padded image.
int forge_jpeg_decode(const uint8_t *data, size_t length, uint64_t max_pixels,
                      forge_jpeg_image *out, char *err, size_t err_capacity);

void forge_jpeg_free(void *pointer);

#ifdef __cplusplus
}
#endif
