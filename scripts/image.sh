#!/usr/bin/env bash
# Builds the Telex container image from this checkout's release binaries, pulling nothing:
# FROM scratch with `telexd`, `telex`, the shared libraries `ldd` says they load, and a
# non-root user. Usage: scripts/image.sh [TAG]   (default telex:dev; also tagged with the commit)
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-${TELEX_IMAGE:-telex:dev}}
bin=${CARGO_TARGET_DIR:-$HOME/telex-target}/release
for b in telexd telex; do
    [ -x "$bin/$b" ] || { echo "image: $bin/$b is missing: run 'make build' first" >&2; exit 1; }
done
command -v docker >/dev/null || { echo "image: docker is not installed" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc" "$ctx/data"
cp "$bin/telexd" "$bin/telex" "$root/usr/local/bin/"
# The release profile keeps debug info for profiling; the image does without it.
strip --strip-debug "$root/usr/local/bin/telexd" "$root/usr/local/bin/telex"

# Every library either binary loads, and the dynamic loader, at the paths ldd reports.
if ldd "$bin/telexd" "$bin/telex" | grep -q 'not found'; then
    echo "image: a shared library is missing:" >&2
    ldd "$bin/telexd" "$bin/telex" | grep 'not found' >&2
    exit 1
fi
libs=$(ldd "$bin/telexd" "$bin/telex" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u)
for lib in $libs; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/:/sbin/nologin
telex:x:10001:10001:Telex:/data:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
telex:x:10001:
GROUP
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"

version=$(awk -F'"' '/^version/ { print $2; exit }' Cargo.toml)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 data/ /data/
USER 10001:10001
WORKDIR /data
ENV TELEX_DATA_DIR=/data
EXPOSE 7400 7401 7402 7480 5222 5223
VOLUME /data
LABEL org.opencontainers.image.title="telex" \\
      org.opencontainers.image.description="Telex clustered instant-messaging server (telexd, telex)" \\
      org.opencontainers.image.version="$version" \\
      org.opencontainers.image.revision="$revision" \\
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/telexd"]
DOCKERFILE

docker build --quiet -t "$tag" -t "telex:$revision" "$ctx" >/dev/null
# The image must start: a missing library or loader shows here, not in a pod.
docker run --rm --entrypoint /usr/local/bin/telexd "$tag" --version >/dev/null
docker run --rm --entrypoint /usr/local/bin/telex "$tag" --version >/dev/null
echo "built $tag (telex:$revision), $(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
