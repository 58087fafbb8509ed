#include "jpeg_shim.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/// libjpeg error manager extended with the jump target and the message it leaves behind.
typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} error_manager;

static void set_error(char *err, size_t capacity, const char *message) {
    if (err && capacity > 0) snprintf(err, capacity, "%s", message);
}

static void on_error_exit(j_common_ptr info) {
    error_manager *manager = (error_manager *)info->err;
    (*info->err->format_message)(info, manager->message);
    longjmp(manager->jump, 1);
}

static void on_emit_message(j_common_ptr info, int level) {
    // A premature end of data is only a warning to libjpeg (it pads the image with grey); we
    // treat it as a fatal error so truncated files are reported instead of silently accepted.
    // Other corrupt-data warnings (e.g. extraneous bytes before a marker) are tolerated.
    if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF) {
        on_error_exit(info);
    }
    if (level < 0) info->err->num_warnings++;
}

static int check_signature(const uint8_t *data, size_t length, char *err, size_t capacity) {
    if (length < 3 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) {
        set_error(err, capacity, "not a JPEG file (bad signature)");
        return -1;
    }
    return 0;
}

/// The colour space we ask libjpeg for, given what the file holds.
static J_COLOR_SPACE output_space_for(J_COLOR_SPACE input) {
    switch (input) {
        case JCS_GRAYSCALE: return JCS_GRAYSCALE;
        case JCS_CMYK:
        case JCS_YCCK: return JCS_CMYK;  // converted to RGB below
        default: return JCS_RGB;
    }
}

int forge_jpeg_read_header(const uint8_t *data, size_t length, uint32_t *width, uint32_t *height,
                           int32_t *channels, char *err, size_t err_capacity) {
    if (check_signature(data, length, err, err_capacity) != 0) return -1;
    struct jpeg_decompress_struct info;
    error_manager manager;
    info.err = jpeg_std_error(&manager.base);
    manager.base.error_exit = on_error_exit;
    manager.base.emit_message = on_emit_message;
    manager.message[0] = 0;
    if (setjmp(manager.jump)) {
        set_error(err, err_capacity, manager.message);
        jpeg_destroy_decompress(&info);
        return -1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)length);
    jpeg_read_header(&info, TRUE);
    *width = info.image_width;
    *height = info.image_height;
    *channels = output_space_for(info.jpeg_color_space) == JCS_GRAYSCALE ? 1 : 3;
    jpeg_destroy_decompress(&info);
    return 0;
}

int forge_jpeg_decode(const uint8_t *data, size_t length, uint64_t max_pixels,
                      forge_jpeg_image *out, char *err, size_t err_capacity) {
    memset(out, 0, sizeof(*out));
    if (check_signature(data, length, err, err_capacity) != 0) return -1;
    struct jpeg_decompress_struct info;
    error_manager manager;
    info.err = jpeg_std_error(&manager.base);
    manager.base.error_exit = on_error_exit;
    manager.base.emit_message = on_emit_message;
    manager.message[0] = 0;
    // Changed after setjmp and needed after a longjmp, so they must be volatile.
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile scanline = NULL;
    if (setjmp(manager.jump)) {
        set_error(err, err_capacity, manager.message);
        free(pixels);
        free(scanline);
        jpeg_destroy_decompress(&info);
        return -1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)length);
    jpeg_read_header(&info, TRUE);

    if ((uint64_t)info.image_width * (uint64_t)info.image_height > max_pixels) {
        char message[160];
        snprintf(message, sizeof message,
                 "image of %u x %u pixels exceeds the pixel budget of %llu pixels",
                 info.image_width, info.image_height, (unsigned long long)max_pixels);
        set_error(err, err_capacity, message);
        jpeg_destroy_decompress(&info);
        return -1;
    }
    info.out_color_space = output_space_for(info.jpeg_color_space);
    jpeg_start_decompress(&info);

    int is_cmyk = info.out_color_space == JCS_CMYK;
    size_t width = info.output_width;
    size_t height = info.output_height;
    size_t out_channels = info.out_color_space == JCS_GRAYSCALE ? 1 : 3;
    size_t decoded_row = width * (size_t)info.output_components;
    size_t out_row = width * out_channels;
    pixels = (uint8_t *)malloc((out_row * height) != 0 ? out_row * height : 1);
    scanline = (uint8_t *)malloc(decoded_row ? decoded_row : 1);
    if (!pixels || !scanline) {
        snprintf(manager.message, sizeof manager.message, "out of memory for pixels");
        longjmp(manager.jump, 1);
    }
    while (info.output_scanline < info.output_height) {
        size_t y = info.output_scanline;
        JSAMPROW row = is_cmyk ? (JSAMPROW)scanline : (JSAMPROW)(pixels + y * out_row);
        if (jpeg_read_scanlines(&info, &row, 1) != 1) {
            snprintf(manager.message, sizeof manager.message, "JPEG data ends early");
            longjmp(manager.jump, 1);
        }
        if (is_cmyk) {
            // Adobe writes inverted CMYK (255 = no ink), which libjpeg passes through as-is:
            // R = C·K/255 and so on.
            uint8_t *target = pixels + y * out_row;
            for (size_t x = 0; x < width; x++) {
                unsigned k = scanline[4 * x + 3];
                for (int c = 0; c < 3; c++) {
                    target[3 * x + c] = (uint8_t)((scanline[4 * x + c] * k + 127) / 255);
                }
            }
        }
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    free(scanline);
    out->width = (uint32_t)width;
    out->height = (uint32_t)height;
    out->channels = (int32_t)out_channels;
    out->pixels = pixels;
    return 0;
}

void forge_jpeg_free(void *pointer) { free(pointer); }
