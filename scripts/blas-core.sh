#!/bin/sh
# Prints the OPENBLAS_CORETYPE the test runner should use, or nothing.
# Nothing when the variable is already set (the user's or the machine's choice wins) or when the
# CPU has neither AVX-512 nor AVX2: OpenBLAS's own detection is then as good as it gets.
[ -n "${OPENBLAS_CORETYPE:-}" ] && exit 0
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
case "$flags" in
  *avx512f*avx512dq*|*avx512dq*avx512f*) echo SkylakeX ;;
  *avx2*) case "$flags" in *fma*) echo Haswell ;; esac ;;
esac
