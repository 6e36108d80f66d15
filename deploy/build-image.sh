#!/bin/sh
# Build llmgw's image where Docker Hub cannot be reached (docs/deployment.md#building-without-docker-hub).
# A Debian bookworm root filesystem made by debootstrap stands in for python:3.11-slim-bookworm:
# Debian's Python 3.11 with pip and venv, no docs or locales. Needs root, debootstrap and a
# running dockerd. Usage: deploy/build-image.sh [TAG]   (default llmgw:latest)
set -eu
tag="${1:-llmgw:latest}"
base="llmgw-base:bookworm"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if ! docker image inspect "$base" >/dev/null 2>&1; then
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
        bookworm "$root" "$mirror"
    # like the official image: pip may install into the system Python, no apt caches, no docs
    rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/locale/* "$root"/usr/share/man/*
    tar -C "$root" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$base"
fi
cd "$(dirname "$0")/.."
# the legacy builder: BuildKit would fetch its Dockerfile frontend from Docker Hub
DOCKER_BUILDKIT=0 docker build --network host --build-arg PYTHON_IMAGE="$base" \
    -f deploy/Dockerfile -t "$tag" .
docker image inspect "$tag" --format "$tag: {{.Size}} bytes"
