#!/usr/bin/env bash
# Builds a container image of Rescope with the local Docker engine, without a base
# image or a registry: the rootfs holds the `rescope` binary (web UI embedded), the C
# libraries it links, a static busybox (a shell, and `nsenter` for host terminals)
# and the host's CA certificates. docs/deploy.md says how to run it.
#
#   scripts/build-image.sh                      build the UI and a release binary, tag rescope:latest
#   scripts/build-image.sh --binary PATH        package an existing binary instead
#   scripts/build-image.sh --tag NAME:TAG       another tag
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
tag="rescope:latest"
while (($#)); do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v docker >/dev/null || { echo "build-image: docker is not installed" >&2; exit 1; }
busybox=""
for b in /bin/busybox /usr/bin/busybox; do [[ -x "$b" ]] && busybox="$b" && break; done
[[ -n "$busybox" ]] || { echo "build-image: needs a static busybox (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
    echo "build-image: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

if [[ -z "$binary" ]]; then
    scripts/build-web.sh
    cargo build --release --locked -p rescope
    binary=target/release/rescope
fi
[[ -x "$binary" ]] || { echo "build-image: $binary is not an executable" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/local/bin,etc/ssl/certs,tmp,var/run/scope/plugins,proc,sys,dev}
chmod 1777 "$root/tmp"
# Debug information is most of a debug build's size and is not needed to run it.
strip --strip-debug -o "$root/usr/local/bin/rescope" "$binary"
# The shared libraries the binary links, at the paths the dynamic loader looks them up.
ldd "$binary" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp "$busybox" "$root/bin/busybox"
for applet in sh ls cat ps nsenter sleep echo; do ln -s busybox "$root/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
[[ -f /etc/ssl/certs/ca-certificates.crt ]] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"

version=$("$root/usr/local/bin/rescope" --version 2>/dev/null | awk '{ print $2 }')
tar -C "$root" -c . | docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/rescope"]' \
    --change 'CMD ["launch"]' \
    --change 'ENV PATH=/usr/local/bin:/bin' \
    --change "LABEL org.opencontainers.image.title=rescope org.opencontainers.image.version=${version:-unknown}" \
    - "$tag" >/dev/null
echo "build-image: $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
