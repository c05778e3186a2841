#!/usr/bin/env bash
# Build the multipose Docker image.
#
#   bash dockerfile/pytorch3d/build.sh [TAG] [DOCKER BUILD OPTIONS...]
#
# TAG: the first argument, else $MULTIPOSE_IMAGE, else multipose:latest. Further arguments go to
# `docker build`, e.g. --build-arg BASE_IMAGE=python:3.11.15-slim-bookworm@sha256:<digest>.
# Works from any directory: the build context is always the repository root (see /.dockerignore).
# The image user gets your uid/gid, so files it writes to the mounted repository are yours.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

image=${MULTIPOSE_IMAGE:-multipose:latest}
if [ "$#" -gt 0 ]; then
    image=$1
    shift
fi

uid=$(id -u)
gid=$(id -g)
if [ "$uid" -eq 0 ]; then
    # Built by root (e.g. sudo): keep the image user unprivileged.
    echo "build.sh: running as root; the image user gets uid/gid 1000" >&2
    uid=1000
    gid=1000
fi

set -x
docker build \
    --file "$script_dir/Dockerfile" \
    --tag "$image" \
    --build-arg "USER_UID=$uid" \
    --build-arg "USER_GID=$gid" \
    "$@" \
    "$repo_root"
