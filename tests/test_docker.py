"""Docker image and cluster launch files (issue 7) - fast, no Docker engine needed.

docker/entrypoint.sh is run with --dry-run (and once for real, against a fake torchrun)
under controlled environments; the Dockerfile is checked to install the project with the
README's own install step, as a non-root user, with the data/output volumes declared.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
BASH = shutil.which("bash") or "/bin/bash"
TRAIN = "/opt/dali-mix/train.py"
# The README's install step, used when README.md does not exist (yet).
KNOWN_INSTALL = "bash scripts/install.sh"


# --------------------------------------------------------------------------- helpers
def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture()
def bindir(tmp_path: Path) -> Path:
    """An empty directory used as the whole PATH: no nvidia-smi, scontrol or torchrun."""
    d = tmp_path / "bin"
    d.mkdir()
    return d


def fake_nvidia_smi(bindir: Path, gpus: int) -> None:
    lines = "".join(
        f"echo 'GPU {i}: NVIDIA A100-SXM4-80GB (UUID: GPU-0000000{i})'\n" for i in range(gpus)
    )
    # a MIG sub-device line must not count as a GPU
    _script(bindir / "nvidia-smi", lines + "echo '  MIG 1g.10gb     Device  0: (UUID: MIG-x)'\n")


def run_entrypoint(
    bindir: Path, env: dict[str, str], *args: str, dry_run: bool = True
) -> subprocess.CompletedProcess:
    """Run entrypoint.sh with exactly `env` (+ PATH=bindir and a VENV without torchrun)."""
    full_env = {"PATH": str(bindir), "VENV": str(bindir.parent / "no-venv"), **env}
    argv = [BASH, str(ENTRYPOINT)] + (["--dry-run"] if dry_run else []) + list(args)
    return subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=30)


def dry_run(bindir: Path, env: dict[str, str], *args: str) -> list[str]:
    proc = run_entrypoint(bindir, env, *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout  # one line, shell-quoted
    return shlex.split(lines[0])


def slurm_env(**extra: str) -> dict[str, str]:
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NNODES": "4",
        "SLURM_NODEID": "2",
        "SLURM_JOB_NODELIST": "node[001-004,007]",
        "SLURM_GPUS_ON_NODE": "8",
    }
    env.update(extra)
    return env


USER_ARGS = ("--data", "/data/my imagenet", "--epochs", "3", "--note", "it's \"quoted\" $HOME")


# --------------------------------------------------------------------------- plain
def test_plain_cpu_without_nvidia_smi(bindir):
    cmd = dry_run(bindir, {}, *USER_ARGS)
    assert cmd == ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=1", TRAIN, *USER_ARGS]


def test_plain_counts_gpus_with_nvidia_smi(bindir):
    fake_nvidia_smi(bindir, 4)
    assert dry_run(bindir, {})[3] == "--nproc_per_node=4"


def test_plain_failing_nvidia_smi_means_cpu(bindir):
    _script(bindir / "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    assert dry_run(bindir, {})[3] == "--nproc_per_node=1"


def test_plain_nproc_override(bindir):
    fake_nvidia_smi(bindir, 8)
    cmd = dry_run(bindir, {"NPROC_PER_NODE": "3"}, "--epochs", "1")
    assert cmd == ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=3", TRAIN, "--epochs", "1"]


def test_dry_run_env_var_and_paths(bindir, tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    _script(venv / "bin" / "torchrun", "exit 0\n")
    cmd = dry_run(bindir, {"DRY_RUN": "1", "VENV": str(venv), "DALI_MIX_HOME": "/src/dm"})
    assert cmd[0] == str(venv / "bin" / "torchrun")
    assert cmd[-1] == "/src/dm/train.py"
    cmd = dry_run(bindir, {"DRY_RUN": "1", "TRAIN_SCRIPT": "/x/y.py"})
    assert cmd[0] == "torchrun" and cmd[-1] == "/x/y.py"


def test_execs_torchrun_with_arguments_intact(bindir):
    """Without --dry-run the command really runs: a fake torchrun on PATH records its argv."""
    _script(
        bindir / "torchrun",
        "for a in \"$@\"; do printf '%s\\0' \"$a\"; done\n",
    )
    proc = run_entrypoint(bindir, {"NPROC_PER_NODE": "2"}, *USER_ARGS, dry_run=False)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.split("\0")[:-1]
    assert argv == ["--standalone", "--nnodes=1", "--nproc_per_node=2", TRAIN, *USER_ARGS]


# --------------------------------------------------------------------------- Slurm
def test_slurm_compressed_nodelist(bindir):
    cmd = dry_run(bindir, slurm_env(), *USER_ARGS)
    assert cmd == [
        "torchrun",
        "--nnodes=4",
        "--node_rank=2",
        "--nproc_per_node=8",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=node001:29500",
        "--rdzv_id=4242",
        TRAIN,
        *USER_ARGS,
    ]


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("node[001-004,007]", "node001"),
        ("gpu-a[3,5]", "gpu-a3"),
        ("n1,n2", "n1"),
        ("node7", "node7"),
        ("node[10-11]", "node10"),
        ("gpu[07,09-12],cpu[1-3]", "gpu07"),
        ("rack[1-2]-n[07-08],login1", "rack1-n07"),
        ("a-b.c[002-003]", "a-b.c002"),
    ],
)
def test_slurm_nodelist_parser(bindir, nodelist, host):
    cmd = dry_run(bindir, slurm_env(SLURM_JOB_NODELIST=nodelist, MASTER_PORT="6000"))
    assert f"--rdzv_endpoint={host}:6000" in cmd


def test_slurm_uses_scontrol_when_available(bindir):
    _script(bindir / "scontrol", 'test "$1 $2 $3" = "show hostnames node[1-2]" || exit 1\n'
            "echo big-node-one; echo big-node-two\n")
    cmd = dry_run(bindir, slurm_env(SLURM_JOB_NODELIST="node[1-2]"))
    assert "--rdzv_endpoint=big-node-one:29500" in cmd


def test_slurm_falls_back_to_parser_when_scontrol_fails(bindir):
    _script(bindir / "scontrol", "exit 1\n")
    cmd = dry_run(bindir, slurm_env(SLURM_JOB_NODELIST="gpu-a[3,5]"))
    assert "--rdzv_endpoint=gpu-a3:29500" in cmd


def test_slurm_nproc_fallbacks(bindir):
    env = slurm_env()
    del env["SLURM_GPUS_ON_NODE"]
    assert "--nproc_per_node=1" in dry_run(bindir, env)  # no GPUs at all: CPU
    fake_nvidia_smi(bindir, 2)
    assert "--nproc_per_node=2" in dry_run(bindir, env)  # GPU count
    assert "--nproc_per_node=5" in dry_run(bindir, {**env, "NPROC_PER_NODE": "5"})


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        (slurm_env(SLURM_NNODES=""), "SLURM_NNODES"),
        (slurm_env(SLURM_NNODES="two"), "SLURM_NNODES"),
        (slurm_env(SLURM_NODEID="-1"), "SLURM_NODEID"),
        (slurm_env(SLURM_NODEID="4"), "SLURM_NODEID"),
        (slurm_env(SLURM_JOB_NODELIST=""), "SLURM_JOB_NODELIST"),
        (slurm_env(SLURM_JOB_NODELIST="node[1-"), "SLURM_JOB_NODELIST"),
        (slurm_env(SLURM_GPUS_ON_NODE="8(x2)"), "SLURM_GPUS_ON_NODE"),
        (slurm_env(MASTER_PORT="99999"), "MASTER_PORT"),
        ({"NPROC_PER_NODE": "0"}, "NPROC_PER_NODE"),
        ({"NPROC_PER_NODE": "four"}, "NPROC_PER_NODE"),
        ({"MASTER_ADDR": "m", "RANK": "0"}, "WORLD_SIZE"),
        ({"MASTER_ADDR": "m", "RANK": "x", "WORLD_SIZE": "2"}, "RANK"),
        ({"DRY_RUN": "maybe"}, "DRY_RUN"),
    ],
)
def test_environment_errors_name_the_variable(bindir, env, variable):
    proc = run_entrypoint(bindir, env, "--epochs", "1")
    assert proc.returncode != 0
    assert variable in proc.stderr
    assert proc.stdout == ""


def test_missing_slurm_nnodes(bindir):
    env = slurm_env()
    del env["SLURM_NNODES"]
    proc = run_entrypoint(bindir, env)
    assert proc.returncode != 0 and "SLURM_NNODES" in proc.stderr


# --------------------------------------------------------------------------- Kubernetes
def k8s_env(**extra: str) -> dict[str, str]:
    env = {"MASTER_ADDR": "dali-mix-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "3", "RANK": "2"}
    env.update(extra)
    return env


def test_kubernetes_pytorchjob(bindir):
    fake_nvidia_smi(bindir, 8)
    cmd = dry_run(bindir, k8s_env(), *USER_ARGS)
    assert cmd == [
        "torchrun",
        "--nnodes=3",
        "--node_rank=2",
        "--master_addr=dali-mix-master-0",
        "--master_port=23456",
        "--nproc_per_node=8",
        TRAIN,
        *USER_ARGS,
    ]


def test_kubernetes_operator_pet_variables_win(bindir):
    # training-operator >= 1.7 with nprocPerNode=4: WORLD_SIZE = 2 pods * 4, PET_* are per node
    env = k8s_env(WORLD_SIZE="8", RANK="1", PET_NNODES="2", PET_NODE_RANK="1", PET_NPROC_PER_NODE="4")
    cmd = dry_run(bindir, env)
    assert cmd[1:6] == [
        "--nnodes=2",
        "--node_rank=1",
        "--master_addr=dali-mix-master-0",
        "--master_port=23456",
        "--nproc_per_node=4",
    ]


def test_kubernetes_auto_nproc_counts_gpus(bindir):
    fake_nvidia_smi(bindir, 2)
    cmd = dry_run(bindir, k8s_env(PET_NPROC_PER_NODE="auto"))
    assert "--nproc_per_node=2" in cmd


def test_kubernetes_rank_out_of_range(bindir):
    proc = run_entrypoint(bindir, k8s_env(RANK="3"))
    assert proc.returncode != 0 and "RANK" in proc.stderr


def test_slurm_wins_over_kubernetes_variables(bindir):
    cmd = dry_run(bindir, {**k8s_env(), **slurm_env()})
    assert "--rdzv_id=4242" in cmd and not any(a.startswith("--master_addr") for a in cmd)


# --------------------------------------------------------------------------- Dockerfile
def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def readme_install_command() -> str:
    """The part before `&&` of the README's set-up commands (fallback: the known command)."""
    readme = ROOT / "README.md"
    if readme.exists():
        blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", readme.read_text(), flags=re.S)
        for block in blocks:
            for line in block.splitlines():
                if "scripts/install.sh" in line and "&&" in line:
                    return line.split("&&")[0].strip()
    return KNOWN_INSTALL


def _words(args: str) -> list[str]:
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


def test_dockerfile_installs_with_the_readme_step():
    install = shlex.split(readme_install_command())
    assert install[:2] == ["bash", "scripts/install.sh"], install
    instr = _instructions(DOCKER / "Dockerfile")
    runs = [_words(a) for i, a in instr if i == "RUN"]
    matching = []
    for words in runs:
        # allow leading VAR=value assignments (VENV=/opt/venv, EXTRAS=...) only
        k = 0
        while k < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[k]):
            k += 1
        if words[k:] == install:
            matching.append(words)
    assert len(matching) == 1, runs
    assert "VENV=/opt/venv" in matching[0]
    # the sources are copied in before the install step runs
    kinds = [i for i, _ in instr]
    install_at = next(n for n, (i, a) in enumerate(instr) if i == "RUN" and "scripts/install.sh" in a)
    assert any(i == "COPY" and _words(a)[0] == "." for i, a in instr[:install_at]), kinds


def test_dockerfile_builds_the_fused_operator_where_the_user_can_read_it():
    """g++ is installed before the install step (which builds dali_mix/native), and the cache
    is a fixed path outside root's home, so the unprivileged user finds the built library."""
    instr = _instructions(DOCKER / "Dockerfile")
    install_at = next(n for n, (i, a) in enumerate(instr) if i == "RUN" and "scripts/install.sh" in a)
    assert any(i == "RUN" and "g++" in _words(a) for i, a in instr[:install_at])
    env = " ".join(a for i, a in instr[:install_at] if i == "ENV")
    native_dir = re.search(r"\bDALI_MIX_NATIVE_DIR=(\S+)", env)
    assert native_dir and not native_dir.group(1).startswith(("/root", "~"))


def test_dockerfile_runs_as_non_root_with_volumes():
    instr = _instructions(DOCKER / "Dockerfile")
    assert instr[0][0] in ("FROM", "ARG")
    users = [a for i, a in instr if i == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    volumes = [v for i, a in instr if i == "VOLUME" for v in _words(a)]
    assert {"/data", "/output"} <= set(volumes)
    env = " ".join(a for i, a in instr if i == "ENV")
    assert re.search(r"\bDALI_MIX_DATA=/data\b", env)
    entry = [a for i, a in instr if i == "ENTRYPOINT"]
    assert entry and _words(entry[-1])[-1].endswith("docker/entrypoint.sh")


def test_dockerignore_excludes_local_state():
    entries = {
        line.strip().strip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for name in (".venv", "data", "runs", ".git"):
        assert name in entries, name
    assert any("__pycache__" in e for e in entries)


# --------------------------------------------------------------------------- launch files
def test_shell_scripts_parse():
    for path in (ENTRYPOINT, DOCKER / "slurm.sbatch"):
        subprocess.run([BASH, "-n", str(path)], check=True)
    assert os.access(ENTRYPOINT, os.X_OK), "entrypoint.sh must be executable"


def test_sbatch_runs_one_task_per_node():
    text = (DOCKER / "slurm.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in text
    assert "--container-image" in text and "/data" in text and "/output" in text


def test_pytorchjob_manifest():
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load((DOCKER / "pytorchjob.yaml").read_text())
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"} and specs["Master"]["replicas"] == 1
    for spec in specs.values():
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch"
        assert "command" not in container  # the image's entrypoint builds the torchrun call
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert {"/data", "/output"} <= set(mounts)
        assert {v["name"] for v in pod["volumes"]} >= {mounts["/data"], mounts["/output"]}


# --------------------------------------------------------------------------- the real image
# docker/build.sh builds the image with podman (or docker) on a local Debian base, and
# docker/smoke.sh runs it (issue 17). Both need a container engine; the build takes minutes and
# gigabytes, so it only runs with DALI_MIX_DOCKER_BUILD=1.
BUILD = DOCKER / "build.sh"
SMOKE = DOCKER / "smoke.sh"
IMAGE = os.environ.get("DALI_MIX_IMAGE", "dali-mix:latest")


def _engine() -> str | None:
    name = os.environ.get("ENGINE")
    if name:
        return shutil.which(name)
    return shutil.which("podman") or shutil.which("docker")


def _image_exists(engine: str, image: str) -> bool:
    proc = subprocess.run([engine, "image", "inspect", image], capture_output=True, timeout=120)
    return proc.returncode == 0


def test_dockerfile_base_image_is_a_build_argument():
    instr = _instructions(DOCKER / "Dockerfile")
    assert instr[0][0] == "ARG" and instr[0][1] == "BASE_IMAGE=python:3.11-slim-bookworm"
    froms = [a for i, a in instr if i == "FROM"]
    assert froms == ["${BASE_IMAGE}"]
    args = {a.split("=")[0] for i, a in instr if i == "ARG"}
    assert {"PIP_FIND_LINKS", "PIP_NO_INDEX"} <= args  # the local wheelhouse of build.sh


def test_build_and_smoke_scripts_parse():
    for path in (BUILD, SMOKE):
        subprocess.run([BASH, "-n", str(path)], check=True)
        assert os.access(path, os.X_OK), path
    text = BUILD.read_text()
    assert "debootstrap" in text and "python3-venv" in text and "bookworm" in text
    assert "--network host" in text


def test_dockerignore_keeps_build_state_out():
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"wheelhouse", "**/*.whl", "rootfs"} <= entries


@pytest.mark.docker
def test_image_quick_smoke():
    """The entrypoint's --dry-run (plain, Slurm, PyTorchJob) and the image's user, versions and
    prebuilt fused operator, in an image that is already built (seconds)."""
    engine = _engine()
    if engine is None:
        pytest.skip("no podman or docker on this machine")
    if not _image_exists(engine, IMAGE):
        pytest.skip(f"image {IMAGE} not built (bash docker/build.sh, or DALI_MIX_DOCKER_BUILD=1)")
    env = {**os.environ, "IMAGE": IMAGE, "STEPS": "quick", "ENGINE": Path(engine).name}
    proc = subprocess.run([BASH, str(SMOKE)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^smoke: 4 passed, 0 failed$", proc.stdout, flags=re.M), proc.stdout


@pytest.mark.docker
@pytest.mark.slow
def test_image_build_and_full_smoke(tmp_path):
    """docker/build.sh then docker/smoke.sh (one-epoch CPU training): ~15-25 min on 2 cores
    the first time (debootstrap + install), a few minutes with cached layers."""
    if os.environ.get("DALI_MIX_DOCKER_BUILD") != "1":
        pytest.skip("the real image build runs only with DALI_MIX_DOCKER_BUILD=1 (minutes, GBs)")
    engine = _engine()
    if engine is None:
        pytest.skip("no podman or docker on this machine")
    # PYTHON: a Python 3.11 with pip for build.sh's wheelhouse (pytest's own, by default)
    env = {"PYTHON": sys.executable, **os.environ, "IMAGE": IMAGE, "ENGINE": Path(engine).name}
    build = subprocess.run([BASH, str(BUILD)], env=env, capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    assert _image_exists(engine, IMAGE)
    env["WORK"] = str(tmp_path / "smoke")
    smoke = subprocess.run([BASH, str(SMOKE)], env=env, capture_output=True, text=True, timeout=1800)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert re.search(r"^smoke: 9 passed, 0 failed$", smoke.stdout, flags=re.M), smoke.stdout
