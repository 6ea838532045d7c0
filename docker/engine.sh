# Sourced by build.sh and smoke.sh: picks the container engine and its settings for this kind
# of machine. Sets `engine` (podman or docker: $ENGINE, else whichever is installed) and
# `engine_args` (podman: runc where crun is missing), and, for podman without CONTAINERS_CONF,
# writes a containers.conf with no default ulimits and the cgroupfs manager into
# ${CACHE:-~/.cache/dali-mix/docker}. Exits 2 naming the cause when there is no engine.
engine="${ENGINE:-}"
if [ -z "$engine" ]; then
    if command -v podman >/dev/null 2>&1; then engine=podman
    elif command -v docker >/dev/null 2>&1; then engine=docker
    else
        echo "$(basename "$0"): neither podman nor docker found (Debian: apt-get install podman runc)" >&2
        exit 2
    fi
fi
engine_args=()
if [ "$engine" = podman ]; then
    if [ -z "${CONTAINERS_CONF:-}" ]; then
        conf_dir="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dali-mix/docker}"
        mkdir -p "$conf_dir"
        export CONTAINERS_CONF="$conf_dir/containers.conf"
        printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' \
            >"$CONTAINERS_CONF"
    fi
    # Debian's podman defaults to crun; use runc when that is the runtime installed
    if ! command -v crun >/dev/null 2>&1 && [ -x /usr/sbin/runc ]; then
        engine_args+=(--runtime /usr/sbin/runc)
    fi
fi
