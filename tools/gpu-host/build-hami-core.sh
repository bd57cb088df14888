#!/usr/bin/env bash
# Build HAMi-core's libvgpu.so from its source archive, configured as HAMi-core's own build.sh configures it (Debug
# build, DLSYM hook, multiprocess limit, meminfo and NVML hooks), for the GPU host tier.
#
#   tools/gpu-host/build-hami-core.sh ARCHIVE OUTDIR
#     ARCHIVE  HAMi-core-<commit>.tar.gz, e.g. ../shared/third_party/HAMi-core-8f3a89c.tar.gz
#     OUTDIR   receives libvgpu.so, build.log and commit.txt; reused while ARCHIVE and this script are unchanged
#
# Needs gcc, the NVIDIA driver (libcuda.so.1, libnvidia-ml.so.1: from ldconfig, or in $HAMI_CORE_DRIVER_LIBS) and
# the headers cuda.h and nvml.h, looked for in
# $HAMI_CORE_CUDA_INCLUDE, $CUDA_HOME/include, /usr/local/cuda/include and the include folders of the PyPI wheels
# nvidia-cuda-runtime and nvidia-nvml-dev (nvidia/cu13/include, nvidia/cuda_runtime/include, ... of any python3).
set -euo pipefail

archive=${1:?usage: build-hami-core.sh ARCHIVE OUTDIR}
out=${2:?usage: build-hami-core.sh ARCHIVE OUTDIR}
script=$(readlink -f "$0")
mkdir -p "$out"
out=$(readlink -f "$out")
log=$out/build.log
say() { echo "[build-hami-core $(date +%H:%M:%S)] $*"; }
fail() { echo "[build-hami-core] ERROR: $* (log: $log)" >&2; exit 1; }

[ -f "$archive" ] || fail "no HAMi-core archive at $archive"
top=$( (tar tzf "$archive" 2>/dev/null || true) | head -1 | cut -d/ -f1)
commit=${top#HAMi-core-}
inputs=$(cat "$archive" "$script" | sha256sum | cut -d' ' -f1)
if [ -f "$out/libvgpu.so" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ]; then
    say "libvgpu.so of HAMi-core $commit is up to date in $out"
    exit 0
fi
: >"$log"
say "building libvgpu.so of HAMi-core $commit from $archive into $out"

# Headers: cuda.h and nvml.h may come from different places (toolkit, driver package, PyPI wheels).
candidates=("${HAMI_CORE_CUDA_INCLUDE:-}" "${CUDA_HOME:-/usr/local/cuda}/include" /usr/local/cuda/include /usr/include)
for site in $(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + sys.path))' 2>/dev/null); do
    candidates+=("$site"/nvidia/cu13/include "$site"/nvidia/cuda_runtime/include "$site"/nvidia/cuda_nvml_dev/include)
done
includes=()
for header in cuda.h nvml.h; do
    found=""
    for dir in "${candidates[@]}"; do
        if [ -n "$dir" ] && [ -f "$dir/$header" ]; then found=$dir; break; fi
    done
    [ -n "$found" ] || fail "$header not found (looked in: ${candidates[*]}); set HAMI_CORE_CUDA_INCLUDE"
    say "$header from $found"
    includes+=("-I$found")
done

# Link against the driver's libraries; the unversioned names may be missing where only the driver is installed.
links=$out/link
mkdir -p "$links"
for lib in libcuda libnvidia-ml; do
    path=""
    if [ -n "${HAMI_CORE_DRIVER_LIBS:-}" ] && [ -f "$HAMI_CORE_DRIVER_LIBS/$lib.so.1" ]; then
        path=$HAMI_CORE_DRIVER_LIBS/$lib.so.1
    fi
    [ -n "$path" ] || path=$(ldconfig -p | awk -v want="$lib.so.1" '$1 == want && /x86-64|64bit/ {print $NF; exit}')
    [ -n "$path" ] || path=$(ldconfig -p | awk -v want="$lib.so.1" '$1 == want {print $NF; exit}')
    [ -n "$path" ] || fail "$lib.so.1 not found by ldconfig: is the NVIDIA driver installed?"
    ln -sf "$path" "$links/$lib.so"
done

src=$out/src
rm -rf "$src" && mkdir -p "$src"
tar xzf "$archive" -C "$src" --strip-components=1 || fail "could not unpack $archive"
mkdir -p "$src/build/config"
cat >"$src/build/config/static_config.h" <<EOF
#define MULTIPROCESS_LIMIT_ENABLE
/* #undef MEMORY_LIMIT_DEBUG */
#define DLSYM_HOOK_ENABLE
/* #undef DLSYM_HOOK_DEBUG */
#define HOOK_MEMINFO_ENABLE
#define HOOK_NVML_ENABLE
extern size_t GIT_HASH_${commit};
extern size_t GIT_BRANCH_unknown;
EOF

# The sources of the vgpu target (src/CMakeLists.txt and its subfolders).
sources=(libvgpu.c utils.c log_utils.c nvml/nvml_entry.c nvml/hook.c cuda/context.c cuda/device.c cuda/hook.c
    cuda/event.c cuda/memory.c cuda/stream.c cuda/graph.c allocator/allocator.c
    multiprocess/multiprocess_memory_limit.c multiprocess/multiprocess_utilization_watcher.c)
flags=(-shared -fPIC -g -D_GNU_SOURCE -Wall "${includes[@]}" "-I$src/src" "-I$src/build/config")
objects=()
started=$(date +%s)
for file in "${sources[@]}"; do
    object=$src/build/${file//\//_}.o
    objects+=("$object")
    gcc "${flags[@]}" -c "$src/src/$file" -o "$object" >>"$log" 2>&1 &
done
wait_failed=0
for job in $(jobs -p); do wait "$job" || wait_failed=1; done
[ "$wait_failed" = 0 ] || fail "compiling HAMi-core failed"
gcc -shared -fPIC -o "$out/libvgpu.so" "${objects[@]}" "-L$links" -lcuda -lnvidia-ml >>"$log" 2>&1 \
    || fail "linking libvgpu.so failed"
echo "$commit" >"$out/commit.txt"
echo "$inputs" >"$out/.inputs"
say "built $out/libvgpu.so ($(du -k "$out/libvgpu.so" | cut -f1) KiB) in $(($(date +%s) - started)) s"
