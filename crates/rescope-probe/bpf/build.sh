#!/bin/sh
# Rebuilds the committed BPF object from its C source:
#   crates/rescope-probe/bpf/build.sh [OUTPUT]   (default: tcptrack.bpf.o here)
# Needs clang (Debian: apt-get install clang) and, to strip DWARF, llvm-strip
# (Debian: llvm); BTF and the CO-RE relocations are kept either way.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/tcptrack.bpf.o}
clang=${CLANG:-clang}
strip=${LLVM_STRIP:-llvm-strip}
cd "$here"
# The source directory is mapped to "." in the debug info (and so in the BTF line
# info), which keeps the object identical wherever the repository is checked out.
"$clang" -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -fdebug-prefix-map="$here"=. \
    -c tcptrack.bpf.c -o "$out.tmp"
if command -v "$strip" >/dev/null 2>&1; then
    "$strip" -g "$out.tmp"
else
    echo "build.sh: $strip not found; the object keeps its DWARF debug info" >&2
fi
mv "$out.tmp" "$out"
