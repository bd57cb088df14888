#!/usr/bin/env bash
# Run hami-e2e against a HAMi checkout — a pull request's tree, a daily build or a release — on a Linux machine with
# root (the sandbox uses network and mount namespaces), Go >= 1.26, Python >= 3.10, gcc and the package registries.
# The same steps as examples/ci/hami-e2e.yml, as one script.
#
# Usage: examples/ci/run-for-hami-pr.sh HAMI_CHECKOUT [--k8s-test-infra DIR_OR_ARCHIVE] [--hami-core DIR_OR_ARCHIVE]
#                                       [--previous VERSION] [-- robot options...]
#   HAMI_CHECKOUT     the HAMi tree under test (built through HAMI_SOURCE); with its tags for the previous release
#   --k8s-test-infra  NVIDIA/k8s-test-infra (its mock NVML): a clone or a .tar.gz (default: already in the folder)
#   --hami-core       HAMi-core to build libvgpu.so from (default: the checkout's libvgpu submodule when present)
#   --previous        the N-1 release for the upgrade test (default 2.9.0): HAMi-<it>.tar.gz in the third-party
#                     folder, made here with `git archive v<it>` of the checkout when missing
# HAMI_E2E_THIRD_PARTY names the folder of source archives (default: a fresh temporary folder).
# Exit code: robot's (0 = every test passed). The report is in results/<release>/<timestamp>/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 1 ] || { sed -n '5,13p' "$0"; exit 2; }
hami=$(realpath "$1"); shift
k8s_test_infra="" hami_core="" previous=2.9.0 robot_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --k8s-test-infra) k8s_test_infra=$(realpath "$2"); shift 2 ;;
    --hami-core) hami_core=$(realpath "$2"); shift 2 ;;
    --previous) previous=$2; shift 2 ;;
    --) shift; robot_args=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
third=${HAMI_E2E_THIRD_PARTY:-$(mktemp -d -t hami-e2e-third-party.XXXX)}
mkdir -p "$third"
export HAMI_E2E_THIRD_PARTY=$third

say() { echo "[hami-pr] $*"; }
archive_of() {  # archive_of SOURCE NAME: a git tree or an existing .tar.gz, as NAME.tar.gz in the third-party folder
  if [ -f "$1" ]; then cp "$1" "$third/$2.tar.gz"; else git -C "$1" archive --prefix="$2/" -o "$third/$2.tar.gz" HEAD; fi
}

if [ -n "$k8s_test_infra" ]; then
  say "mock NVML from $k8s_test_infra"
  rm -f "$third"/k8s-test-infra-*.tar.gz
  archive_of "$k8s_test_infra" k8s-test-infra-under-test
fi
if [ -z "$hami_core" ] && [ -f "$hami/libvgpu/CMakeLists.txt" ]; then hami_core=$hami/libvgpu; fi
if [ -n "$hami_core" ]; then say "HAMi-core from $hami_core"; export HAMI_CORE_SOURCE=$hami_core; fi
if [ ! -f "$third/HAMi-$previous.tar.gz" ]; then
  say "previous release v$previous from the checkout's tag"
  git -C "$hami" archive --prefix="HAMi-$previous/" -o "$third/HAMi-$previous.tar.gz" "v$previous"
fi
say "HAMi under test: $hami; third-party archives in $third"
export HAMI_SOURCE=$hami
exec "$repo/tools/run-e2e" "${robot_args[@]}"
