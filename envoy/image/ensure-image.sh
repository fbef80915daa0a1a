#!/usr/bin/env bash
# Ensures a minimal image FROM scratch holding one dynamically linked binary and exactly the shared
# libraries `ldd` resolves for it (glibc, the loader, libgcc_s for Rust binaries). No registry is
# contacted: `FROM scratch` needs no pull. The binary's sha256 is a label of the image, so an
# image whose binary is unchanged is not rebuilt (idempotent, cheap on every `make test`).
#
#   ensure-image.sh TAG BINARY NAME [EXPOSE...]
#     TAG      image tag, e.g. edge-envoy:1.40.0
#     BINARY   path of the binary on this machine
#     NAME     name it gets in the image: /usr/local/bin/NAME, also the entrypoint
#     EXPOSE   ports to declare
set -euo pipefail
tag=$1 bin=$2 name=$3
shift 3
[ -x "$bin" ] || { echo "ensure-image: $bin is not an executable file" >&2; exit 1; }
command -v docker >/dev/null || { echo "ensure-image: docker is not installed" >&2; exit 1; }

sum=$(sha256sum "$bin" | cut -d' ' -f1)
have=$(docker image inspect -f '{{index .Config.Labels "org.edge-filters.binary-sha256"}}' "$tag" 2>/dev/null || true)
if [ "$have" = "$sum" ]; then
  echo "image $tag is up to date"
  exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/etc"
cp -L "$bin" "$ctx/rootfs/usr/local/bin/$name"
# Every absolute path ldd prints (libraries and the loader), copied at the same path.
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
# A passwd/group so tools that look the user up find one; the process runs as nobody.
printf 'root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n' > "$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ctx/rootfs/etc/group"
chmod 1777 "$ctx/rootfs/tmp"

{
  echo "FROM scratch"
  echo "COPY rootfs/ /"
  for p in "$@"; do echo "EXPOSE $p"; done
  echo "USER 65534:65534"
  echo "ENTRYPOINT [\"/usr/local/bin/$name\"]"
} > "$ctx/Dockerfile"
if ! docker build -q -t "$tag" --label org.edge-filters.image="$name" \
    --label org.edge-filters.binary-sha256="$sum" "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  exit 1
fi
echo "built image $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
