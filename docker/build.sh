#!/usr/bin/env bash
# Builds the dali-mix image (docker/Dockerfile) with podman, or docker where there is no podman,
# on a machine that cannot pull from Docker Hub: the base image is made locally from Debian's
# packages (debootstrap bookworm + python3 3.11 + python3-venv, imported as an image), and the
# Python wheels come from a local wheelhouse filled once with `pip download` (from pip's own
# sources: its cache, find-links and indexes), so torch & co. are not downloaded again per build.
#
#   bash docker/build.sh                       # local Debian base, local wheelhouse, tag dali-mix:latest
#   BASE_IMAGE=python:3.11-slim-bookworm bash docker/build.sh   # the public base (needs Docker Hub)
#
# Environment (all optional):
#   ENGINE=podman|docker     default: podman if present, else docker
#   IMAGE=dali-mix:latest    tag of the built image
#   BASE_IMAGE=...           use this base instead of making the local one
#   LOCAL_BASE=localhost/dali-mix-base:bookworm   tag of the local Debian base
#   REBUILD_BASE=1           re-run debootstrap even when the local base exists
#   DEBIAN_MIRROR=http://deb.debian.org/debian
#   CACHE=~/.cache/dali-mix/docker      where the rootfs and the wheelhouse live (never the repo)
#   WHEELHOUSE=$CACHE/wheelhouse        local wheels; WHEELS=0 builds without them (pip downloads)
#   WHEELS_VIA=mount|http    podman: mount the wheelhouse into the build (default) or serve it on
#                            127.0.0.1 as docker builds do (docker cannot mount into a build)
#   PYTHON=...               a Python 3.11 with pip for `pip download` (default: the repo's
#                            .venv, else python3); must match the image's Python (3.11)
#   EXTRAS= TORCH_SPEC=...   passed to the Dockerfile (see there)
#   CONTAINERS_CONF          podman only; default: a generated file with cgroup_manager=cgroupfs
#                            and no default ulimits (what this kind of host needs)
# Prints the timings of each step and the image size at the end.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

log() { printf '[build.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 2; }
step_start=0
step() { step_start=$SECONDS; log "$*"; }
step_done() { log "done in $((SECONDS - step_start)) s"; }

# --- engine ------------------------------------------------------------------------------
# shellcheck source=engine.sh
source "$here/docker/engine.sh"
eng() { "$engine" "${engine_args[@]}" "$@"; }

image="${IMAGE:-dali-mix:latest}"
cache="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dali-mix/docker}"
mkdir -p "$cache"
t0=$SECONDS

# --- base image --------------------------------------------------------------------------
base="${BASE_IMAGE:-}"
if [ -z "$base" ]; then
    base="${LOCAL_BASE:-localhost/dali-mix-base:bookworm}"
    if [ "${REBUILD_BASE:-0}" = 1 ] || ! eng image inspect "$base" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (apt-get install debootstrap)"
        [ "$(id -u)" = 0 ] || die "debootstrap needs root"
        mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
        rootfs="$cache/rootfs"
        step "debootstrap bookworm (minbase + python3, python3-venv) into $rootfs"
        rm -rf "$rootfs"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
            || { tail -20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
        # the same suites as the official images: updates and security too
        security="${mirror%/debian}/debian-security"
        cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
        chroot "$rootfs" apt-get clean
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/tmp/*
        step_done
        step "import the rootfs as $base"
        # An imported image has no environment: set PATH (and LANG) as python:*-slim does,
        # so that the Dockerfile's ENV PATH=/opt/venv/bin:$PATH keeps /usr/bin.
        tar -C "$rootfs" -c . | eng import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python3"]' \
            - "$base" >/dev/null
        rm -rf "$rootfs"
        step_done
    else
        log "reusing the local base $base (REBUILD_BASE=1 to make it anew)"
    fi
fi

# --- wheelhouse --------------------------------------------------------------------------
build_args=(--build-arg "BASE_IMAGE=$base")
[ -n "${EXTRAS+x}" ] && build_args+=(--build-arg "EXTRAS=$EXTRAS")
[ -n "${TORCH_SPEC:-}" ] && build_args+=(--build-arg "TORCH_SPEC=$TORCH_SPEC")
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT
if [ "${WHEELS:-1}" != 0 ]; then
    wheelhouse="${WHEELHOUSE:-$cache/wheelhouse}"
    py="${PYTHON:-}"
    if [ -z "$py" ]; then
        if [ -x "$here/.venv/bin/python" ]; then py="$here/.venv/bin/python"; else py=python3; fi
    fi
    pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [ "$pyver" = 3.11 ] || die "PYTHON=$py is Python $pyver; the image has 3.11 (set PYTHON, or WHEELS=0)"
    torch_spec="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
    stamp="$wheelhouse/.complete"
    want="$torch_spec | $(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        step "pip download into $wheelhouse (torch + dali-mix's dependencies + build tools)"
        mkdir -p "$wheelhouse"
        # shellcheck disable=SC2086
        "$py" -m pip download --quiet --disable-pip-version-check -d "$wheelhouse" \
            $torch_spec "$here" "setuptools>=77" pip wheel
        rm -f "$wheelhouse"/dali_mix-* "$wheelhouse"/dali-mix-*
        printf '%s' "$want" >"$stamp"
        step_done
    fi
    log "wheelhouse: $(du -sh "$wheelhouse" | cut -f1) in $wheelhouse"
    # pip in the build installs from the wheelhouse only (PIP_NO_INDEX): nothing is downloaded
    build_args+=(--build-arg PIP_NO_INDEX=1)
    if [ "$engine" = podman ] && [ "${WHEELS_VIA:-mount}" = mount ]; then
        build_args+=(-v "$wheelhouse:/wheelhouse:ro" --build-arg PIP_FIND_LINKS=/wheelhouse)
    else
        # docker build cannot mount a host folder: serve it on the loopback (build uses host net)
        port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
        "$py" -m http.server --bind 127.0.0.1 --directory "$wheelhouse" "$port" >/dev/null 2>&1 &
        server_pid=$!
        sleep 1
        build_args+=(--build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/")
    fi
fi

# --- build -------------------------------------------------------------------------------
step "$engine build -t $image (base $base)"
eng build --network host -f docker/Dockerfile -t "$image" "${build_args[@]}" .
step_done
size="$(eng image inspect --format '{{.Size}}' "$image")"
log "image $image: $((size / 1000000)) MB ($size bytes); total $((SECONDS - t0)) s"
