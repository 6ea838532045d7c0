#!/usr/bin/env bash
# dali-mix container entrypoint: turns the launcher's environment into ONE torchrun command
# that runs train.py with this script's arguments appended, then execs it.
#
#   entrypoint.sh [--dry-run] [train.py arguments...]
#
# Launcher detection (first match wins):
#   Slurm       SLURM_JOB_ID set. Needs SLURM_NNODES, SLURM_NODEID, SLURM_JOB_NODELIST (or
#               SLURM_NODELIST). One task per node; c10d rendezvous on the first host of the
#               node list, port MASTER_PORT (default 29500), rendezvous id SLURM_JOB_ID.
#   Kubernetes  MASTER_ADDR and RANK set (Kubeflow training-operator PyTorchJob, one pod per
#               node). nnodes = PET_NNODES, else WORLD_SIZE; node rank = PET_NODE_RANK, else RANK.
#               The operator sets WORLD_SIZE = number of pods (Master + Workers) and RANK = pod
#               index (Master 0, Worker i -> i+1). Since training-operator v1.7 it multiplies
#               WORLD_SIZE by spec.nprocPerNode when that is a number, and also sets
#               PET_NNODES / PET_NODE_RANK, which are always node-level - hence they win.
#               Static rendezvous on MASTER_ADDR:MASTER_PORT (default port 29500).
#   plain       anything else: single node, --standalone.
#
# Processes per node: NPROC_PER_NODE if set; else SLURM_GPUS_ON_NODE (Slurm) or a numeric
# PET_NPROC_PER_NODE (Kubernetes); else the number of GPUs `nvidia-smi -L` lists; else 1 (CPU).
#
# Other environment:
#   DRY_RUN=1            same as --dry-run: print the command (one shell-quoted line), don't run it
#   VENV                 torchrun is $VENV/bin/torchrun (default VENV=/opt/venv) if executable,
#                        else `torchrun` from PATH
#   DALI_MIX_HOME        where the project lives (default /opt/dali-mix)
#   TRAIN_SCRIPT         the training script (default $DALI_MIX_HOME/train.py)
#
# Only bash builtins are used (plus nvidia-smi / scontrol when present), so it also runs with
# a bare PATH. Errors in the environment exit with status 2 and name the variable.
set -euo pipefail

prog="${0##*/}"
die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 2
}

# --- argument / mode handling ------------------------------------------------------------
dry_run=0
case "${DRY_RUN:-0}" in
    1 | true | yes) dry_run=1 ;;
    0 | false | no | "") ;;
    *) die "DRY_RUN must be 0 or 1, got '${DRY_RUN}'" ;;
esac
if [ "${1:-}" = "--dry-run" ]; then
    dry_run=1
    shift
fi

# --- validation helpers --------------------------------------------------------------------
# uint NAME VALUE: VALUE is a non-negative decimal integer (no sign, no spaces).
uint() {
    [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a non-negative integer, got '$2'"
    printf '%d' "$((10#$2))"
}
# posint NAME VALUE: VALUE is an integer >= 1.
posint() {
    local v
    v="$(uint "$1" "$2")" || exit 2
    [ "$v" -ge 1 ] || die "$1 must be >= 1, got '$2'"
    printf '%s' "$v"
}
# required NAME [CONTEXT]: the variable NAME is set and not empty.
required() {
    [ -n "${!1:-}" ] || die "$1 is not set (required ${2:-here})"
}
port() {
    local v
    v="$(uint "$1" "$2")" || exit 2
    { [ "$v" -ge 1 ] && [ "$v" -le 65535 ]; } || die "$1 must be a TCP port (1-65535), got '$2'"
    printf '%s' "$v"
}

# --- GPU count -----------------------------------------------------------------------------
# Number of GPUs `nvidia-smi -L` lists ("GPU 0: ..." lines; MIG sub-devices are not counted),
# 0 when nvidia-smi is missing or fails.
gpu_count() {
    local out line n=0
    command -v nvidia-smi >/dev/null 2>&1 || { printf 0; return; }
    out="$(nvidia-smi -L 2>/dev/null)" || { printf 0; return; }
    while IFS= read -r line; do
        [[ $line =~ ^GPU\ [0-9]+: ]] && n=$((n + 1))
    done <<<"$out"
    printf '%s' "$n"
}

# nproc_per_node [NAME VALUE]: NPROC_PER_NODE override, else the launcher's value (if given,
# non-empty and > 0), else GPU count, else 1.
nproc_per_node() {
    if [ -n "${NPROC_PER_NODE:-}" ]; then
        posint NPROC_PER_NODE "$NPROC_PER_NODE"
        return
    fi
    if [ $# -eq 2 ] && [ -n "$2" ]; then
        local v
        v="$(uint "$1" "$2")" || exit 2
        if [ "$v" -ge 1 ]; then
            printf '%s' "$v"
            return
        fi
    fi
    local g
    g="$(gpu_count)"
    if [ "$g" -ge 1 ]; then printf '%s' "$g"; else printf 1; fi
}

# --- Slurm node lists ----------------------------------------------------------------------
# First host of a Slurm hostlist expression, without scontrol:
#   node[001-004,007] -> node001   gpu-a[3,5] -> gpu-a3   n1,n2 -> n1
#   rack[1-2]-n[07-08],x -> rack1-n07   node7 -> node7
# Takes the first comma-separated item outside brackets, then replaces every bracket group
# with the first number of its first range (leading zeros kept).
first_host_parse() {
    local list="$1" item="" c depth=0 i
    for ((i = 0; i < ${#list}; i++)); do
        c="${list:i:1}"
        case "$c" in
            "[") depth=$((depth + 1)) ;;
            "]") depth=$((depth - 1)) ;;
            ",") [ "$depth" -eq 0 ] && break ;;
            " ") continue ;;
        esac
        item+="$c"
    done
    local out="" rest="$item" group
    while [[ $rest == *"["* ]]; do
        out+="${rest%%"["*}"
        rest="${rest#*"["}"
        [[ $rest == *"]"* ]] || return 1
        group="${rest%%"]"*}"
        rest="${rest#*"]"}"
        group="${group%%,*}"
        group="${group%%-*}"
        [[ $group =~ ^[0-9]+$ ]] || return 1
        out+="$group"
    done
    out+="$rest"
    [[ -n $out && $out != *"]"* ]] || return 1
    printf '%s' "$out"
}

# First host of a node list: `scontrol show hostnames` when available, else first_host_parse.
first_host() {
    local out
    if command -v scontrol >/dev/null 2>&1 && out="$(scontrol show hostnames "$1" 2>/dev/null)" \
        && [ -n "${out%%$'\n'*}" ]; then
        printf '%s' "${out%%$'\n'*}"
        return
    fi
    first_host_parse "$1"
}

# --- build the command ---------------------------------------------------------------------
venv="${VENV:-/opt/venv}"
if [ -x "$venv/bin/torchrun" ]; then
    torchrun="$venv/bin/torchrun"
else
    torchrun=torchrun
fi
train_script="${TRAIN_SCRIPT:-${DALI_MIX_HOME:-/opt/dali-mix}/train.py}"

cmd=("$torchrun")
if [ -n "${SLURM_JOB_ID:-}" ]; then
    ctx="when SLURM_JOB_ID is set"
    required SLURM_NNODES "$ctx"
    required SLURM_NODEID "$ctx"
    nnodes="$(posint SLURM_NNODES "$SLURM_NNODES")"
    node_rank="$(uint SLURM_NODEID "$SLURM_NODEID")"
    [ "$node_rank" -lt "$nnodes" ] || die "SLURM_NODEID=$node_rank must be < SLURM_NNODES=$nnodes"
    if [ -n "${SLURM_JOB_NODELIST:-}" ]; then
        nodelist_var=SLURM_JOB_NODELIST
    elif [ -n "${SLURM_NODELIST:-}" ]; then
        nodelist_var=SLURM_NODELIST
    else
        die "SLURM_JOB_NODELIST is not set (required $ctx)"
    fi
    host="$(first_host "${!nodelist_var}")" \
        || die "$nodelist_var='${!nodelist_var}' is not a Slurm node list"
    master_port="$(port MASTER_PORT "${MASTER_PORT:-29500}")"
    nproc="$(nproc_per_node SLURM_GPUS_ON_NODE "${SLURM_GPUS_ON_NODE:-}")"
    cmd+=(
        "--nnodes=$nnodes"
        "--node_rank=$node_rank"
        "--nproc_per_node=$nproc"
        "--rdzv_backend=c10d"
        "--rdzv_endpoint=$host:$master_port"
        "--rdzv_id=$SLURM_JOB_ID"
    )
elif [ -n "${MASTER_ADDR:-}" ] && [ -n "${RANK:-}" ]; then
    ctx="for a Kubernetes PyTorchJob (MASTER_ADDR and RANK are set)"
    if [ -n "${PET_NNODES:-}" ]; then
        nnodes_var=PET_NNODES
    else
        nnodes_var=WORLD_SIZE
        required WORLD_SIZE "$ctx"
    fi
    node_rank_var=RANK
    [ -n "${PET_NODE_RANK:-}" ] && node_rank_var=PET_NODE_RANK
    nnodes="$(posint "$nnodes_var" "${!nnodes_var}")"
    node_rank="$(uint "$node_rank_var" "${!node_rank_var}")"
    [ "$node_rank" -lt "$nnodes" ] \
        || die "$node_rank_var=$node_rank must be < $nnodes_var=$nnodes (the number of nodes)"
    master_port="$(port MASTER_PORT "${MASTER_PORT:-29500}")"
    pet_nproc="${PET_NPROC_PER_NODE:-}"
    [[ $pet_nproc =~ ^[0-9]+$ ]] || pet_nproc="" # "auto", "gpu", "cpu": detect ourselves
    nproc="$(nproc_per_node PET_NPROC_PER_NODE "$pet_nproc")"
    cmd+=(
        "--nnodes=$nnodes"
        "--node_rank=$node_rank"
        "--master_addr=$MASTER_ADDR"
        "--master_port=$master_port"
        "--nproc_per_node=$nproc"
    )
else
    nproc="$(nproc_per_node)"
    cmd+=(--standalone --nnodes=1 "--nproc_per_node=$nproc")
fi
cmd+=("$train_script" "$@")

# --- run or print --------------------------------------------------------------------------
# Quote one word for a POSIX shell: bare when it only holds safe characters, else '...'.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

if [ "$dry_run" -eq 1 ]; then
    line=""
    for word in "${cmd[@]}"; do
        line+="${line:+ }$(quote "$word")"
    done
    printf '%s\n' "$line"
    exit 0
fi
exec "${cmd[@]}"
