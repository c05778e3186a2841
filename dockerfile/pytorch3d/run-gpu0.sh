#!/usr/bin/env bash
# Start the multipose image on GPU 0 with the repository mounted as the working directory.
#
#   bash dockerfile/pytorch3d/run-gpu0.sh [REPO_DIR] [COMMAND...]
#   bash dockerfile/pytorch3d/run-gpu0.sh ~/multipose python train.py experiment_template.cfg
#   bash dockerfile/pytorch3d/run-gpu0.sh                  # interactive bash in this repository
#   MULTIPOSE_GPUS=all bash dockerfile/pytorch3d/run-gpu0.sh torchrun --standalone --nproc_per_node=4 train.py my.cfg
#
# REPO_DIR: the first argument when it is an existing directory, else $MULTIPOSE_REPO_DIR, else the
# repository this script belongs to. It is mounted read-write at /workspace/multipose (the image's
# WORKDIR), so code edits, data, outputs and caches stay on the host. The remaining arguments are the
# command (default: an interactive bash). The image is $MULTIPOSE_IMAGE (default multipose:latest); the GPUs
# are $MULTIPOSE_GPUS (docker's --gpus: default device=0; all, or e.g. '"device=0,1"', for torchrun).
#
# The container runs as your uid/gid; no host account or password files, keys or
# other secrets are mounted. Needs the NVIDIA Container Toolkit (for --gpus).
# X11: only when DISPLAY is set, the X socket and DISPLAY are passed on (for a local display; you may
# need `xhost +SI:localuser:$(id -un)`). The image's matplotlib backend is Agg (files only), so the
# interactive plots of show_loss_landscape.py are best run on the host.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
container_dir=/workspace/multipose
image=${MULTIPOSE_IMAGE:-multipose:latest}

repo_dir=${MULTIPOSE_REPO_DIR:-$script_dir/../..}
if [ "$#" -gt 0 ] && [ -d "$1" ]; then
    repo_dir=$1
    shift
fi
if [ ! -d "$repo_dir" ]; then
    echo "run-gpu0.sh: repository directory not found: $repo_dir" >&2
    exit 2
fi
repo_dir=$(cd "$repo_dir" && pwd)  # absolute: docker takes a relative source for a volume name
if [ ! -f "$repo_dir/train.py" ]; then
    echo "run-gpu0.sh: warning: $repo_dir has no train.py; it is mounted over the image's copy of the code" >&2
fi

if [ "$#" -eq 0 ]; then
    set -- bash
fi

opts=(
    --rm
    --init
    --gpus "${MULTIPOSE_GPUS:-device=0}"
    --user "$(id -u):$(id -g)"
    --shm-size "${MULTIPOSE_SHM_SIZE:-8g}"  # PyTorch shares tensors (DataLoader workers) through /dev/shm
    --volume "$repo_dir:$container_dir"
    --workdir "$container_dir"
)
# A terminal only when there is one (scripts, cron and CI have none).
if [ -t 0 ] && [ -t 1 ]; then
    opts+=(--interactive --tty)
else
    opts+=(--interactive)
fi
if [ -n "${DISPLAY:-}" ]; then
    opts+=(--env "DISPLAY=$DISPLAY" --volume /tmp/.X11-unix:/tmp/.X11-unix:ro)
fi

exec docker run "${opts[@]}" "$image" "$@"
