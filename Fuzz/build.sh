#!/usr/bin/env bash
# Builds the libFuzzer harnesses of Fuzz/Harnesses into $FUZZ_BUILD (default .build-fuzz/).
#
# SwiftPM would need unsafeFlags for the sanitizers, so the modules are compiled here directly:
#   - CKernels (TensorCore's SIMD kernels): plain clang, no sanitizer. They are no decoder, and their
#     target_clones/ifunc resolvers run before ASan is initialised.
#   - CPNG, CJPEG (the C shims the decoders call): clang -fsanitize=fuzzer-no-link,address.
#   - TensorCore: swiftc -sanitize=address (memory errors are caught, no coverage feedback from it).
#   - DataIO: swiftc -sanitize=fuzzer,address -enable-testing, so a harness can `@testable import` it
#     and reach internal decoders (the JSON parser).
#   - one executable per harness, linked with libFuzzer by -sanitize=fuzzer,address.
# libpng, libjpeg, libsndfile and zlib are the system's (not instrumented): their inner branches give no
# coverage feedback, but every byte they hand back to Forge's code is checked by ASan.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${FUZZ_BUILD:-.build-fuzz}
SWIFTC=${SWIFTC:-swiftc}
CLANG=${CLANG:-clang}
mkdir -p "$OUT/modules"

# Module maps for the C targets (SwiftPM generates these for targets with an include/ folder).
cat > "$OUT/modules/module.modulemap" <<EOF
module CPNG { header "$PWD/Sources/CPNG/include/png_shim.h" export * }
module CJPEG { header "$PWD/Sources/CJPEG/include/jpeg_shim.h" export * }
module CKernels { header "$PWD/Sources/CKernels/include/CKernels.h" export * }
EOF

echo "fuzz: C shims"
$CLANG -O2 -g -c Sources/CKernels/kernels.c -I Sources/CKernels/include -o "$OUT/kernels.o"
$CLANG -O2 -g -c Sources/CKernels/thread_pool.c -I Sources/CKernels/include -o "$OUT/thread_pool.o"
$CLANG -O1 -g -fsanitize=fuzzer-no-link,address -c Sources/CPNG/png_shim.c -I Sources/CPNG/include -o "$OUT/png_shim.o"
$CLANG -O1 -g -fsanitize=fuzzer-no-link,address -c Sources/CJPEG/jpeg_shim.c -I Sources/CJPEG/include -o "$OUT/jpeg_shim.o"

INCLUDES=(-I "$OUT" -I "$OUT/modules" -I Sources/CBLAS -I Sources/CSndFile -I Sources/CZlib)

echo "fuzz: TensorCore (address sanitizer)"
$SWIFTC -O -g -sanitize=address -parse-as-library -module-name TensorCore -emit-module -emit-module-path "$OUT/TensorCore.swiftmodule" \
    -emit-library -static -o "$OUT/libTensorCore.a" "${INCLUDES[@]}" $(find Sources/TensorCore -name '*.swift' | sort)

echo "fuzz: DataIO (fuzzer coverage + address sanitizer)"
$SWIFTC -O -g -sanitize=fuzzer,address -enable-testing -parse-as-library -module-name DataIO -emit-module -emit-module-path "$OUT/DataIO.swiftmodule" \
    -emit-library -static -o "$OUT/libDataIO.a" "${INCLUDES[@]}" $(find Sources/DataIO -name '*.swift' | sort)

for harness in Fuzz/Harnesses/*.swift; do
    name=$(basename "$harness" .swift)
    echo "fuzz: fuzz-$name"
    $SWIFTC -O -g -sanitize=fuzzer,address -parse-as-library -module-name "Fuzz_$name" "${INCLUDES[@]}" "$harness" \
        -L "$OUT" -lDataIO -lTensorCore "$OUT/png_shim.o" "$OUT/jpeg_shim.o" "$OUT/kernels.o" "$OUT/thread_pool.o" \
        -lpng16 -ljpeg -lsndfile -lz -lopenblas -lm -o "$OUT/fuzz-$name"
done
echo "fuzz: built $(ls "$OUT"/fuzz-* | wc -l) harnesses in $OUT"
