#!/usr/bin/env bash
# Builds bottle-test/busybox:1, the image that runtime-docker's tests and examples/docker use.
#
# CI hosts cannot pull from a registry, so the image is made locally: a root directory with a
# static busybox, one symlink per applet and a page for httpd to serve, imported with
# `docker import`. Skips the build when the image is already present, so it is cheap to call
# before every test run. Needs busybox-static (scripts/start-docker.sh installs it).
#
# Environment: DOCKER (the docker binary, default `docker`), BOTTLE_TEST_IMAGE (default
# bottle-test/busybox:1), BUSYBOX (a statically linked busybox, default /bin/busybox).
set -euo pipefail

docker=${DOCKER:-docker}
image=${BOTTLE_TEST_IMAGE:-bottle-test/busybox:1}
busybox=${BUSYBOX:-/bin/busybox}

if "$docker" image inspect "$image" >/dev/null 2>&1; then
    echo "docker-test-image: $image is already present"
    exit 0
fi

if [[ ! -x $busybox ]]; then
    echo "docker-test-image: $busybox not found; install busybox-static" \
        "(scripts/start-docker.sh does)" >&2
    exit 1
fi
# A dynamically linked busybox would need the host's libc inside the image; `ldd` succeeds
# only on dynamic executables.
if command -v ldd >/dev/null && ldd "$busybox" >/dev/null 2>&1; then
    echo "docker-test-image: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/bin" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    if [[ $applet != busybox && ! -e $root/bin/$applet ]]; then
        ln -s busybox "$root/bin/$applet"
    fi
done
# httpd serves its working directory, which is / in this image.
echo 'bottle-test busybox' >"$root/index.html"

tar -C "$root" -c . | "$docker" import \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["/bin/sh"]' \
    - "$image" >/dev/null
echo "docker-test-image: built $image"
