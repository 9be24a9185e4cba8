#!/usr/bin/env bash
# Builds a one-layer OCI image layout from a folder, with standard tools only
# (GNU tar, gzip, sha256sum), and tags it. Running it again with another tag
# adds that tag; with the same tag, moves it.
#
#   scripts/make-layout.sh LAYOUT_DIR TAG [CONTENT_DIR]
#
# Without CONTENT_DIR the image holds one file, index.html, naming the tag.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 LAYOUT_DIR TAG [CONTENT_DIR]" >&2
  exit 2
fi
layout=$1 tag=$2 content=${3:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -z $content ]]; then
  content=$work/content
  mkdir -p "$content"
  printf '<h1>hello from %s</h1>\n' "$tag" > "$content/index.html"
fi

mkdir -p "$layout/blobs/sha256"
[[ -f $layout/oci-layout ]] || printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
[[ -f $layout/index.json ]] || printf '{"schemaVersion":2,"manifests":[]}' > "$layout/index.json"

# put FILE: stores FILE as a blob, prints "sha256:HEX SIZE".
put() {
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  cp "$1" "$layout/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$content" -cf "$work/layer.tar" .
diff_id=sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -c "$work/layer.tar" > "$work/layer.tar.gz"
read -r layer_digest layer_size < <(put "$work/layer.tar.gz")

printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$diff_id" > "$work/config.json"
read -r config_digest config_size < <(put "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$work/manifest.json"
read -r manifest_digest manifest_size < <(put "$work/manifest.json")

# Re-tag: keep the entries of other tags (in the one-line form this script writes).
entry=$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}' \
  "$manifest_digest" "$manifest_size" "$tag")
others=$(grep -o '{"mediaType":[^{}]*"annotations":{[^{}]*}}' "$layout/index.json" \
  | grep -v "\"org.opencontainers.image.ref.name\":\"$tag\"" | paste -sd, - || true)
printf '{"schemaVersion":2,"manifests":[%s%s]}\n' "${others:+$others,}" "$entry" > "$layout/index.json.tmp"
mv "$layout/index.json.tmp" "$layout/index.json"
echo "$manifest_digest"
