#include "png_shim.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/// Where libpng's error callback leaves its message before it longjmps back into our shim.
typedef struct {
    char *err;
    size_t capacity;
} error_sink;

static void set_error(char *err, size_t capacity, const char *message) {
    if (err && capacity > 0) {
        snprintf(err, capacity, "%s", message);
    }
}

static void on_png_error(png_structp png, png_const_charp message) {
    error_sink *sink = (error_sink *)png_get_error_ptr(png);
    if (sink) set_error(sink->err, sink->capacity, message);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp message) {
    // Warnings (unknown chunks, bad ancillary CRCs...) do not stop decoding.
    (void)png;
    (void)message;
}

/// Memory source for png_set_read_fn.
typedef struct {
    const uint8_t *data;
    size_t length;
    size_t position;
} memory_reader;

static void read_from_memory(png_structp png, png_bytep destination, png_size_t count) {
    memory_reader *reader = (memory_reader *)png_get_io_ptr(png);
    if (count > reader->length - reader->position) {
        png_error(png, "truncated PNG data (file ends early)");
    }
    memcpy(destination, reader->data + reader->position, count);
    reader->position += count;
}

/// Sets the transformations that turn every PNG into 8- or 16-bit gray/GA/RGB/RGBA.
static void configure_expansion(png_structp png, png_infop info) {
    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (bit_depth == 16) png_set_swap(png);  // network byte order -> little-endian host order
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

static int check_signature(const uint8_t *data, size_t length, char *err, size_t capacity) {
    if (length < 8 || png_sig_cmp((png_const_bytep)data, 0, 8) != 0) {
        set_error(err, capacity, "not a PNG file (bad signature)");
        return -1;
    }
    return 0;
}

int forge_png_read_header(const uint8_t *data, size_t length, uint32_t *width, uint32_t *height,
                          int32_t *channels, int32_t *bit_depth, char *err, size_t err_capacity) {
    if (check_signature(data, length, err, err_capacity) != 0) return -1;
    error_sink sink = {err, err_capacity};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &sink, on_png_error, on_png_warning);
    if (!png) { set_error(err, err_capacity, "libpng: out of memory"); return -1; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_error(err, err_capacity, "libpng: out of memory");
        return -1;
    }
    memory_reader reader = {data, length, 0};
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);  // our own pixel budget decides
    png_set_read_fn(png, &reader, read_from_memory);
    png_read_info(png, info);
    configure_expansion(png, info);
    *width = png_get_image_width(png, info);
    *height = png_get_image_height(png, info);
    *channels = png_get_channels(png, info);
    *bit_depth = png_get_bit_depth(png, info);
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

int forge_png_decode(const uint8_t *data, size_t length, uint64_t max_pixels,
                     forge_png_image *out, char *err, size_t err_capacity) {
    memset(out, 0, sizeof(*out));
    if (check_signature(data, length, err, err_capacity) != 0) return -1;
    // The IHDR chunk must come first (bytes 8..32); check its size claim against the budget
    // before libpng reads (and buffers) any further chunk.
    if (length >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        uint32_t claimed_width = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
        uint32_t claimed_height = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
        if ((uint64_t)claimed_width * (uint64_t)claimed_height > max_pixels) {
            char message[160];
            snprintf(message, sizeof message,
                     "image of %u x %u pixels exceeds the pixel budget of %llu pixels",
                     claimed_width, claimed_height, (unsigned long long)max_pixels);
            set_error(err, err_capacity, message);
            return -1;
        }
    }
    error_sink sink = {err, err_capacity};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &sink, on_png_error, on_png_warning);
    if (!png) { set_error(err, err_capacity, "libpng: out of memory"); return -1; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_error(err, err_capacity, "libpng: out of memory");
        return -1;
    }
    memory_reader reader = {data, length, 0};
    // Changed after setjmp and needed after a longjmp, so they must be volatile.
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);  // our own pixel budget decides
    png_set_read_fn(png, &reader, read_from_memory);
    png_read_info(png, info);

    uint32_t width = png_get_image_width(png, info);
    uint32_t height = png_get_image_height(png, info);
    if ((uint64_t)width * (uint64_t)height > max_pixels) {
        char message[160];
        snprintf(message, sizeof message,
                 "image of %u x %u pixels exceeds the pixel budget of %llu pixels",
                 width, height, (unsigned long long)max_pixels);
        set_error(err, err_capacity, message);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    configure_expansion(png, info);

    size_t row_bytes = png_get_rowbytes(png, info);
    size_t channels = png_get_channels(png, info);
    size_t depth = png_get_bit_depth(png, info);
    if (row_bytes != (size_t)width * channels * (depth / 8)) {
        png_error(png, "unexpected row size after expansion");
    }
    if (height != 0 && row_bytes > SIZE_MAX / height) png_error(png, "image too large");
    pixels = (uint8_t *)malloc((row_bytes * height) != 0 ? row_bytes * height : 1);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (height ? height : 1));
    if (!pixels || !rows) png_error(png, "out of memory for pixels");
    for (uint32_t y = 0; y < height; y++) rows[y] = pixels + (size_t)y * row_bytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);

    out->width = width;
    out->height = height;
    out->channels = (int32_t)channels;
    out->bit_depth = (int32_t)depth;
    out->pixels = pixels;
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

/// Growable memory sink for png_set_write_fn.
typedef struct {
    uint8_t *data;
    size_t length;
    size_t capacity;
} memory_writer;

static void write_to_memory(png_structp png, png_bytep source, png_size_t count) {
    memory_writer *writer = (memory_writer *)png_get_io_ptr(png);
    if (count > SIZE_MAX - writer->length) png_error(png, "PNG output too large");
    size_t needed = writer->length + count;
    if (needed > writer->capacity) {
        size_t capacity = writer->capacity ? writer->capacity : 4096;
        while (capacity < needed) capacity = capacity > SIZE_MAX / 2 ? needed : capacity * 2;
        uint8_t *grown = (uint8_t *)realloc(writer->data, capacity);
        if (!grown) png_error(png, "out of memory while encoding PNG");
        writer->data = grown;
        writer->capacity = capacity;
    }
    memcpy(writer->data + writer->length, source, count);
    writer->length += count;
}

static void flush_memory(png_structp png) { (void)png; }

int forge_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int32_t channels,
                     int32_t compression_level, uint8_t **out, size_t *out_length,
                     char *err, size_t err_capacity) {
    *out = NULL;
    *out_length = 0;
    int color_type;
    switch (channels) {
        case 1: color_type = PNG_COLOR_TYPE_GRAY; break;
        case 2: color_type = PNG_COLOR_TYPE_GRAY_ALPHA; break;
        case 3: color_type = PNG_COLOR_TYPE_RGB; break;
        case 4: color_type = PNG_COLOR_TYPE_RGB_ALPHA; break;
        default: set_error(err, err_capacity, "PNG encode: channels must be 1, 2, 3 or 4"); return -1;
    }
    if (width == 0 || height == 0) {
        set_error(err, err_capacity, "PNG encode: width and height must be positive");
        return -1;
    }
    error_sink sink = {err, err_capacity};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, on_png_error, on_png_warning);
    if (!png) { set_error(err, err_capacity, "libpng: out of memory"); return -1; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        set_error(err, err_capacity, "libpng: out of memory");
        return -1;
    }
    // On the heap so that its contents, changed by the write callback after setjmp, are still
    // well defined after a longjmp (non-volatile locals changed after setjmp are not).
    memory_writer *writer = (memory_writer *)calloc(1, sizeof(memory_writer));
    if (!writer) {
        png_destroy_write_struct(&png, &info);
        set_error(err, err_capacity, "libpng: out of memory");
        return -1;
    }
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(writer->data);
        free(writer);
        free(rows);
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, writer, write_to_memory, flush_memory);
    if (compression_level >= 0 && compression_level <= 9) png_set_compression_level(png, compression_level);
    png_set_IHDR(png, info, width, height, 8, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * height);
    if (!rows) png_error(png, "out of memory");
    size_t row_bytes = (size_t)width * (size_t)channels;
    for (uint32_t y = 0; y < height; y++) rows[y] = (png_bytep)(pixels + (size_t)y * row_bytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    free(rows);
    png_destroy_write_struct(&png, &info);
    *out = writer->data;
    *out_length = writer->length;
    free(writer);
    return 0;
}

void forge_png_free(void *pointer) { free(pointer); }
