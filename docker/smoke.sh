#!/usr/bin/env bash
# Smoke test of a built dali-mix image (docker/build.sh), on the CPU:
#   1. the entrypoint's --dry-run in the plain, Slurm and Kubernetes PyTorchJob environments;
#   2. the image itself: unprivileged user, Python/torch/DALI versions, the prebuilt fused
#      operator loads without a compiler run;
#   3. a small Fashion-MNIST subset converted with the image (into a host folder);
#   4. a one-epoch CPU training run through the entrypoint (torchrun) as the image's user, with
#      /data read-only and /output writable; then the checkpoints and metrics it left are checked;
#   5. the same training as a uid the image does not know (Slurm's LAUNCHER=docker does that);
#   6. a two-node PyTorchJob: two containers, RANK 0 and 1, static rendezvous on 127.0.0.1.
#
#   bash docker/smoke.sh                  # IMAGE=dali-mix:latest, LIMIT=1000
#
# Environment: ENGINE, IMAGE, STEPS (all, or quick: parts 1 and 2 only, ~15 s), LIMIT (samples per split), EPOCHS (1), WORK (a scratch folder,
# default a new temporary one, removed on success unless KEEP=1), CONTAINERS_CONF (podman).
# Exit status 0 when every check passed; prints "smoke: N passed, 0 failed" at the end.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# shellcheck source=engine.sh
source "$here/docker/engine.sh"
image="${IMAGE:-dali-mix:latest}"
limit="${LIMIT:-1000}"
epochs="${EPOCHS:-1}"
work="${WORK:-$(mktemp -d /tmp/dali-mix-smoke.XXXXXX)}"
mkdir -p "$work/data" "$work/output"
# the image's user (uid 1000 by default) must be able to write these host folders
chmod 0777 "$work/data" "$work/output"

passed=0 failed=0
ok() { passed=$((passed + 1)); printf 'PASS %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
t() { local s=$SECONDS; "$@"; printf '     (%d s)\n' "$((SECONDS - s))"; }
run() { "$engine" "${engine_args[@]}" run --rm --network host "$@"; }

echo "smoke: $engine, image $image, scratch $work"

# --- 1. entrypoint --dry-run ------------------------------------------------------------
expect_dry() {  # NAME EXPECTED [run options...]
    local name="$1" want="$2" got
    shift 2
    if got="$(run "$@" "$image" --dry-run --epochs 1 2>&1)" && [ "$got" = "$want" ]; then
        ok "dry-run $name: $got"
    else
        bad "dry-run $name: got '$got', want '$want'"
    fi
}
tr=/opt/venv/bin/torchrun train=/opt/dali-mix/train.py
t expect_dry plain "$tr --standalone --nnodes=1 --nproc_per_node=1 $train --epochs 1"
t expect_dry slurm \
    "$tr --nnodes=2 --node_rank=1 --nproc_per_node=1 --rdzv_backend=c10d --rdzv_endpoint=node001:29500 --rdzv_id=4242 $train --epochs 1" \
    -e SLURM_JOB_ID=4242 -e SLURM_NNODES=2 -e SLURM_NODEID=1 -e 'SLURM_JOB_NODELIST=node[001-002]'
t expect_dry pytorchjob \
    "$tr --nnodes=2 --node_rank=1 --master_addr=dali-mix-master-0 --master_port=23456 --nproc_per_node=1 $train --epochs 1" \
    -e MASTER_ADDR=dali-mix-master-0 -e MASTER_PORT=23456 -e WORLD_SIZE=2 -e RANK=1

# --- 2. the image ------------------------------------------------------------------------
check_image() {
    local out
    if out="$(run --entrypoint /bin/bash "$image" -c '
        set -e
        echo "user $(id -un) uid $(id -u)"
        [ "$(id -u)" != 0 ]
        python -c "import sys, torch, nvidia.dali, dali_mix; print(\"python\", sys.version.split()[0], \"| torch\", torch.__version__, \"| DALI\", nvidia.dali.__version__, \"| dali-mix\", dali_mix.__version__)"
        ls -l "$DALI_MIX_NATIVE_DIR"
        # loads the library built at image build time: CXX=false would fail any compile
        CXX_BEFORE=$(ls "$DALI_MIX_NATIVE_DIR" | wc -l)
        python -m dali_mix.native
        [ "$(ls "$DALI_MIX_NATIVE_DIR" | wc -l)" = "$CXX_BEFORE" ]
        ! touch /opt/dali-mix/x 2>/dev/null
    ' 2>&1)"; then
        ok "image: $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-400)"
    else
        bad "image checks: $out"
    fi
}
t check_image

if [ "${STEPS:-all}" = quick ]; then
    [ -n "${WORK:-}" ] || rm -rf "$work"
    echo "smoke: $passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit
fi

# --- 3. data -----------------------------------------------------------------------------
idx_mount=()
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    idx_mount=(-v /usr/share/datasets/fashion-mnist:/usr/share/datasets/fashion-mnist:ro)
fi
prepare() {
    local out
    if out="$(run "${idx_mount[@]}" -v "$work/data:/data" --entrypoint /opt/venv/bin/dali-mix \
        "$image" data fashion-mnist --limit "$limit" --no-install 2>&1)" \
        && [ -f "$work/data/fashion-mnist-limit$limit/manifest.json" ]; then
        ok "Fashion-MNIST subset ($limit per split) in $work/data/fashion-mnist-limit$limit"
    else
        bad "data preparation: $out"
    fi
}
t prepare

# --- 4. one-epoch CPU training, /data read-only ------------------------------------------
train() {
    local s=$SECONDS
    if run --shm-size 1g -v "$work/data:/data:ro" -v "$work/output:/output" "$image" \
        --output /output/run --epochs "$epochs" --limit "$limit" --no-progress \
        >"$work/train.log" 2>&1 && ! grep -q "fused CPU operator is not available" "$work/train.log"; then
        ok "training: $epochs epoch(s) on $limit images in $((SECONDS - s)) s, fused operator loaded"
    else
        bad "training (exit $?): $(tail -30 "$work/train.log")"
    fi
    tail -5 "$work/train.log" | sed 's/^/     | /'
}
t train
check_output() {
    local out
    if out="$(run -i -v "$work/data:/data:ro" -v "$work/output:/output:ro" --entrypoint /opt/venv/bin/python \
        "$image" - "$epochs" <<'EOF' 2>&1
import json, math, os, sys, torch
epochs = int(sys.argv[1])
run = "/output/run"
rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
assert len(rows) == epochs and rows[-1]["epoch"] == epochs, rows
assert math.isfinite(rows[-1]["train_loss"]) and 0 <= rows[-1]["val_top1"] <= 100, rows
ck = torch.load(f"{run}/last.pt", map_location="cpu", weights_only=False)
assert ck["epoch"] == epochs and ck["model_name"] == "resnet18", {k: ck[k] for k in ("epoch", "model_name")}
assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
assert os.path.isfile(f"{run}/best.pt")
try:
    open("/data/probe", "w")
    sys.exit("/data is writable")
except OSError:
    pass
print(f"metrics {rows[-1]} | last.pt epoch {ck['epoch']}, {len(ck['model'])} tensors | best.pt | /data read-only")
EOF
    )"; then
        ok "output: $out"
    else
        bad "output checks: $out"
    fi
    ls -ln "$work/output/run" | sed 's/^/     | /'
}
t check_output

# --- 5. another uid, as slurm.sbatch's LAUNCHER=docker runs it (--user "$(id -u):$(id -g)") --
other_uid() {
    local s=$SECONDS
    mkdir -p "$work/output-uid" && chmod 0777 "$work/output-uid"
    if run --user 4321:4321 -v "$work/data:/data:ro" -v "$work/output-uid:/output" "$image" \
        --output /output/run --epochs 1 --limit "$limit" --no-progress >"$work/train-uid.log" 2>&1 \
        && [ -f "$work/output-uid/run/last.pt" ] && [ -f "$work/output-uid/run/metrics.jsonl" ] \
        && ! grep -q "fused CPU operator is not available" "$work/train-uid.log"; then
        ok "training as uid 4321 (not in the image's passwd) in $((SECONDS - s)) s"
    else
        bad "training as uid 4321: $(tail -30 "$work/train-uid.log")"
    fi
}
t other_uid

# --- 6. two nodes of a PyTorchJob: two containers, static rendezvous on 127.0.0.1 ---------------
# (Slurm's c10d rendezvous cannot be tried this way: two containers on one host with
# --network host have the same hostname and PID 1, so torch sees one node twice.)
two_nodes() {
    local s=$SECONDS n pids=() rcs=() port="${SMOKE_PORT:-29615}"
    mkdir -p "$work/output-2n" && chmod 0777 "$work/output-2n"
    for n in 0 1; do
        run --name "dali-mix-smoke-$$-$n" -e MASTER_ADDR=127.0.0.1 -e MASTER_PORT="$port" \
            -e WORLD_SIZE=2 -e RANK="$n" -v "$work/data:/data:ro" -v "$work/output-2n:/output" \
            "$image" --output /output/run --epochs 1 --limit "$limit" --no-progress \
            >"$work/train-2n-$n.log" 2>&1 &
        pids+=($!)
    done
    # a watchdog: a rendezvous that never forms must not hang the smoke test
    ( sleep "${SMOKE_2N_TIMEOUT:-400}"
      "$engine" "${engine_args[@]}" kill "dali-mix-smoke-$$-0" "dali-mix-smoke-$$-1" ) >/dev/null 2>&1 &
    local watchdog=$!
    for n in 0 1; do
        if wait "${pids[$n]}"; then rcs+=(0); else rcs+=($?); fi
    done
    kill "$watchdog" 2>/dev/null || true
    if [ "${rcs[*]}" = "0 0" ] && grep -q "on cpu x2" "$work/train-2n-0.log" \
        && [ -f "$work/output-2n/run/last.pt" ]; then
        ok "2-node PyTorchJob (WORLD_SIZE=2, RANK=0/1) in $((SECONDS - s)) s: $(grep -m1 '^epoch 1/' "$work/train-2n-0.log")"
    else
        bad "2-node PyTorchJob (exit ${rcs[*]}): $(tail -20 "$work/train-2n-0.log"; tail -20 "$work/train-2n-1.log")"
    fi
}
t two_nodes

echo "smoke: $passed passed, $failed failed"
if [ "$failed" = 0 ] && [ "${KEEP:-0}" != 1 ] && [ -z "${WORK:-}" ]; then
    rm -rf "$work"
fi
[ "$failed" = 0 ]
