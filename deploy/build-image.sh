#!/bin/sh
# Build llmgw's image where Docker Hub cannot be reached (docs/deployment.md#building-without-docker-hub).
# Two Debian bookworm root filesystems made by debootstrap stand in for python:3.11-slim-bookworm:
#   llmgw-build:bookworm  Debian's Python 3.11 with pip, venv and binutils (the build stage)
#   llmgw-base:bookworm   Debian's Python 3.11 and CA certificates only (the runtime stage): no
#                         apt, perl, PAM, util-linux, docs, man pages, locales or package lists
# Needs root, debootstrap and a running dockerd. Usage: deploy/build-image.sh [TAG]
# (default llmgw:latest). Delete an llmgw-*:bookworm image to make it again.
set -eu
tag="${1:-llmgw:latest}"
build_base="llmgw-build:bookworm"
run_base="llmgw-base:bookworm"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# Drop what no process in the image reads: package caches and lists, docs (the copyright files
# stay), man and info pages, message catalogues, glibc's iconv modules (Python has its own codecs).
slim() {
    root="$1"
    rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* \
        "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
        "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/locale/* \
        "$root"/usr/share/lintian "$root"/usr/share/bash-completion
    find "$root"/usr/share/doc -type f ! -name copyright -delete
    find "$root"/usr/share/doc -type l -delete
    find "$root"/usr/share/doc -type d -empty -delete
}

make_base() {
    name="$1" packages="$2" purge="$3" trust_host="${4:-}"
    docker image inspect "$name" >/dev/null 2>&1 && return 0
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror"
    # like the official image: pip may install into the system Python
    rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
    if [ -n "$purge" ]; then
        # The runtime needs no package manager, shell logins or disk tools: purge them through
        # dpkg (so /var/lib/dpkg/status, which image scanners read, stays true), perl last since
        # the others' maintainer scripts use it.
        # shellcheck disable=SC2086
        chroot "$root" dpkg --purge --force-remove-essential --force-depends --force-bad-path $purge
        chroot "$root" dpkg --purge --force-remove-essential --force-depends --force-bad-path debconf perl-base
        rm -rf "$root"/usr/lib/x86_64-linux-gnu/gconv "$root"/usr/lib/python3.11/pydoc_data
    fi
    slim "$root"
    if [ -n "$trust_host" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        # The build stage trusts what this host trusts (a TLS-intercepting proxy on the way to
        # PyPI); only the build base, which never ships, gets the host's bundle.
        cp /etc/ssl/certs/ca-certificates.crt "$root"/etc/ssl/certs/ca-certificates.crt
    fi
    tar -C "$root" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$name"
    rm -rf "$root"
    trap - EXIT
}

make_base "$build_base" python3,python3-venv,python3-pip,python-is-python3,ca-certificates "" \
    trust-host
make_base "$run_base" python3,ca-certificates "apt libapt-pkg6.0 gpgv libgnutls30 libp11-kit0 \
    libunistring2 libidn2-0 libnettle8 libhogweed6 libgmp10 libtasn1-6 adduser passwd login \
    libpam-modules libpam-modules-bin libpam-runtime libpam0g libdb5.3 util-linux \
    util-linux-extra mount e2fsprogs libext2fs2 libss2 logsave libsemanage2 \
    libsemanage-common libsepol2 libsystemd0 libgcrypt20 libgpg-error0 libmount1 libblkid1 \
    libsmartcols1 sysvinit-utils bsdutils libaudit1 libaudit-common libcap-ng0 \
    ncurses-bin diffutils hostname debianutils"
cd "$(dirname "$0")/.."
# the legacy builder: BuildKit would fetch its Dockerfile frontend from Docker Hub
DOCKER_BUILDKIT=0 docker build --network host --build-arg BUILD_IMAGE="$build_base" \
    --build-arg PYTHON_IMAGE="$run_base" -f deploy/Dockerfile -t "$tag" .
docker image inspect "$tag" --format "$tag: {{.Size}} bytes"
