"""End to end through main_train.py and Tune: smoke runs, determinism, kill and resume."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tesp.algorithms.maml import MAMLConfig

from .conftest import REPO
from .helpers import local_learner
from .runner import SMALL, kill_orphaned_ray, main_train_cmd, pids, results, run_main_train, trial_dirs

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STAGE_KEYS = ["meta/return_stage_0", "meta/return_stage_1", "meta/return_pre", "meta/return_post"]
OTHER_KEYS = [
    "meta/inner_loss", "meta/outer_loss_before", "meta/outer_loss_after", "meta/kl", "meta/env_steps",
    "meta/env_steps_per_s", "meta/time_sample_s", "meta/time_adapt_s", "meta/time_outer_s", "meta/param_norm",
    # the mechanism measures (tesp.meta.mechanism) every gradient method has
    "meta/adaptation_kl", "meta/step_size_q10", "meta/step_size_q50", "meta/step_size_q90",
]  # fmt: skip
LATENT_KEYS = ["meta/context_kl", "meta/z_inner_shift_ratio"]


@pytest.mark.parametrize(
    ("alg", "extra", "alg_keys"),
    [
        ("maml", [], []),
        ("e_maml", [], ["meta/e_maml_term"]),
        ("mime", ["--set", "pre_epochs=0"], ["meta/eta", "meta/information_gain", "meta/dynamics_loss"]),
        (
            "meta_sgd",
            ["--set", "num_inner_steps=2"],
            ["meta/step_size_mean", "meta/return_stage_2", "meta/step_size_grad_below_eps"],
        ),
        (
            "maml",
            ["--set", "outer_optimizer=trpo", "--set", "second_order=false"],
            ["meta/trpo_step_fraction"],
        ),
        ("adaptsv", [], ["meta/regularizer", "meta/embedding_norm", "meta/step_size_mean", *LATENT_KEYS]),
        ("maesn", [], ["meta/latent_prior_kl", "meta/embedding_norm", "meta/step_size_mean", *LATENT_KEYS]),
        (
            "tesp",
            ["--set", "model.encoder_units=8"],
            ["meta/regularizer", "meta/embedding_norm", *LATENT_KEYS],
        ),
        (
            "tesp",
            ["--tesp-adapt-policy", "--set", "model.encoder_units=8"],
            ["meta/regularizer", "meta/embedding_norm", *LATENT_KEYS],
        ),
        (
            "tesp_context_only",
            ["--set", "model.encoder_units=8"],
            ["meta/regularizer", "meta/embedding_norm", *LATENT_KEYS],
        ),
    ],
    ids=[
        "maml",
        "e_maml",
        "mime",
        "meta_sgd",
        "maml-trpo-first-order",
        "adaptsv",
        "maesn",
        "tesp",
        "tesp-adapt-policy",
        "tesp-context-only",
    ],
)
def test_two_iteration_smoke_run(tmp_path, alg, extra, alg_keys):
    proc = run_main_train(
        "--env", "point", "--alg", alg, "--stop-iters", "2", "--checkpoint-freq", "1",
        "--storage-path", str(tmp_path), "--name", "smoke", *SMALL, *extra,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "smoke")
    with open(trial / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["training_iteration"]) for r in rows] == [1, 2]
    for key in STAGE_KEYS + OTHER_KEYS + alg_keys:
        assert key in rows[0], key
        assert np.isfinite(float(rows[-1][key])), key
    assert int(float(rows[-1]["num_env_steps_sampled_lifetime"])) > 0
    if alg == "tesp_context_only":  # the control: no inner step moves the policy
        assert float(rows[-1]["meta/adaptation_kl"]) == 0.0
        assert float(rows[-1]["meta/step_size_q90"]) == 0.0
    assert "meta_batch_size" in (trial / "params.json").read_text()
    assert list(trial.glob("events.out.tfevents.*")), "no TensorBoard file"
    # run.keep_checkpoints defaults to 1: only the newest checkpoint stays.
    assert sorted(p.name for p in trial.glob("checkpoint_*")) == ["checkpoint_000001"]
    assert f"last checkpoint: {trial / 'checkpoint_000001'}" in proc.stdout
    assert str(tmp_path / "smoke") in proc.stdout
    assert "iter    2 | return" in proc.stdout  # the per-iteration progress line


def test_grid_search_runs_one_trial_per_value_in_one_experiment(tmp_path):
    proc = run_main_train(
        "--env", "point", "--alg", "maml", "--stop-iters", "1", "--storage-path", str(tmp_path), "--name", "grid",
        *SMALL, "--set", "num_env_runners=0", "--set", "inner_lr={grid_search: [0.05, 0.2]}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = trial_dirs(tmp_path / "grid")
    assert len(trials) == 2
    lrs = sorted(json.loads((t / "params.json").read_text())["inner_lr"] for t in trials)
    assert lrs == [0.05, 0.2]
    assert all(results(t)[-1]["training_iteration"] == 1 for t in trials)


def _metrics_of_two_iterations(seed: int) -> list[dict[str, float]]:
    config = (
        MAMLConfig()
        .environment("point")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .training(meta_batch_size=3, episodes_per_task=4, num_outer_steps=2)
        .debugging(seed=seed)
    )
    algo = config.build_algo()
    try:
        out = []
        for _ in range(2):
            meta = algo.train()["meta"]
            out.append(
                {k: v for k, v in meta.items() if not k.startswith("time_") and k != "env_steps_per_s"}
            )
        return out
    finally:
        algo.stop()


def test_restore_of_a_checkpoint_tune_deleted_takes_the_newest_kept(ray_session, tmp_path):
    """Tune deletes the older checkpoint when it registers a newer one and writes the experiment
    state naming the newer one later; a kill in between made --resume fail (CI, 2026-12-05:
    "checkpoint_000004 ... does not exist on storage anymore" with checkpoint_000005 on disk).
    Restoring the missing one restores the newest complete sibling instead; a partly written
    one is skipped; with no newer sibling Tune's own error stays."""
    from tesp.settings import resolve_config

    small = {"meta_batch_size": 2, "episodes_per_task": 2, "num_envs_per_env_runner": 2, "num_env_runners": 0}
    config, _, _ = resolve_config("maml", "point", {**small, "seed": 0})
    trial = tmp_path / "trial"
    algo = config.build_algo()
    try:
        algo.train()
        algo.save_to_path(str(trial / "checkpoint_000004"))
        algo.train()
        algo.save_to_path(str(trial / "checkpoint_000005"))
        state = {k: v.detach().clone() for k, v in local_learner(algo).policy.state_dict().items()}
    finally:
        algo.stop()
    (trial / "checkpoint_000006").mkdir()  # a kill while the next one was being written
    (trial / "checkpoint_000006" / "algorithm_state.pkl").write_bytes(b"\x80")
    shutil.rmtree(trial / "checkpoint_000004")

    fresh = config.build_algo()
    try:
        fresh.restore(str(trial / "checkpoint_000004"))
        assert fresh.iteration == 2
        got = local_learner(fresh).policy.state_dict()
        for key, value in state.items():
            assert torch.equal(got[key], value), key
        assert fresh.train()["training_iteration"] == 3
        with pytest.raises(ValueError, match="checkpoint_000009"):
            fresh.restore(str(trial / "checkpoint_000009"))
    finally:
        fresh.stop()


def test_a_trial_tune_starts_afresh_restores_the_newest_complete_checkpoint_in_its_folder(
    ray_session, tmp_path
):
    """Tune writes its experiment state from a background thread; a driver that died early (a
    full disk) can leave a state written before the trial's first checkpoint, and a resume then
    starts the trial from scratch (CI and by hand, 2026-12-07: iteration 1 after a full disk at
    iteration 10). The trial restores the newest complete checkpoint of its own folder instead,
    skipping an incomplete one; in a folder without checkpoints it starts from scratch."""
    from types import SimpleNamespace

    from tesp.settings import resolve_config

    small = {"meta_batch_size": 2, "episodes_per_task": 2, "num_envs_per_env_runner": 2, "num_env_runners": 0}
    config, _, _ = resolve_config("maml", "point", {**small, "seed": 0})
    trial = tmp_path / "trial"
    algo = config.build_algo()
    try:
        for i in (1, 2):
            algo.train()
            algo.save(str(trial / f"checkpoint_00000{i}"))  # Trainable.save: with the manifest
    finally:
        algo.stop()
    (trial / "checkpoint_000003").mkdir()  # cut short by the full disk
    (trial / "checkpoint_000003" / "algorithm_state.pkl").write_bytes(b"")

    def storage(folder):
        return SimpleNamespace(
            storage_filesystem=SimpleNamespace(type_name="local"),
            trial_fs_path=str(folder),
            persist_artifacts=lambda **_: None,
        )

    for folder, expected in ((trial, 3), (tmp_path / "empty", 1)):
        folder.mkdir(exist_ok=True)
        fresh = config.build_algo()
        try:
            fresh._storage = storage(folder)  # what Tune gives the trial's actor
            assert fresh.train()["training_iteration"] == expected
        finally:
            fresh._storage = None
            fresh.stop()


@pytest.mark.parametrize("alg", ["tesp", "maesn"])
def test_checkpoint_restores_every_meta_parameter(ray_session, tmp_path, alg):
    """The encoder (TESP), the per-task latent tables (MAESN), the step sizes, the optimizer
    and the task rng survive a checkpoint, and training continues from it."""
    from ray.rllib.algorithms.algorithm import Algorithm

    from tesp.settings import resolve_config

    small = {"meta_batch_size": 2, "episodes_per_task": 3, "num_envs_per_env_runner": 3, "num_env_runners": 0}
    if alg == "tesp":
        small["model.encoder_units"] = 8
    config, _, _ = resolve_config(alg, "point", {**small, "seed": 3})
    algo = config.build_algo()
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        state = {k: v.detach().clone() for k, v in local_learner(algo).policy.state_dict().items()}
        rng = algo.task_env.np_random.bit_generator.state
    finally:
        algo.stop()
    assert any(k.startswith(("encoder.", "task_latent_")) for k in state)
    assert any(k.startswith("step_sizes.") for k in state)
    restored = Algorithm.from_checkpoint(path)
    try:
        got = restored.learner_group._learner.policy.state_dict()
        assert set(got) == set(state)
        for key, value in state.items():
            assert torch.equal(got[key], value), key
        assert restored.task_env.np_random.bit_generator.state == rng
        assert restored.train()["training_iteration"] == 2
    finally:
        restored.stop()


def test_same_seed_gives_identical_metrics(ray_session):
    first, second = _metrics_of_two_iterations(11), _metrics_of_two_iterations(11)
    assert first == second
    assert _metrics_of_two_iterations(12) != first


def _wait_for(path, proc, timeout=300, poll=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(path()):
            return list(path())
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(poll)
    raise TimeoutError("no checkpoint appeared")


def test_sigkill_then_resume_continues_iterations_parameters_and_optimizer(tmp_path):
    exp = tmp_path / "crash"
    stop = 20  # far more iterations than can run between the 2nd checkpoint and the kill
    args = [
        "--env", "point", "--alg", "maml", "--stop-iters", str(stop), "--checkpoint-freq", "1",
        "--storage-path", str(tmp_path), "--name", "crash", *SMALL,
    ]  # fmt: skip
    existing = pids()
    proc = subprocess.Popen(
        main_train_cmd(*args),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Any checkpoint after the first: only the newest stays (run.keep_checkpoints=1, which keeps
        # Tune's experiment state in step with it), so checkpoint_000001 lives for one iteration, and a
        # fast machine finished that between two polls (CI, 2026-12-04: the run ended unseen).
        _wait_for(lambda: exp.glob("*/checkpoint_0*[1-9]/algorithm_state.pkl"), proc, poll=0.1)
        time.sleep(1.0)  # let the checkpoint finish writing
    finally:
        with contextlib.suppress(ProcessLookupError):  # ended already: _wait_for says so
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)
        kill_orphaned_ray(existing)
    (trial,) = trial_dirs(exp)
    # Tune resumes from the newest checkpoint its experiment state had registered; a kill while the
    # next one was being committed can leave that one on disk unregistered. Record every candidate.
    saved = {}
    for checkpoint in sorted(trial.glob("checkpoint_*")):
        try:
            with open(checkpoint / "algorithm_state.pkl", "rb") as f:
                iteration = pickle.load(f)["training_iteration"]
            with open(
                checkpoint / "learner_group/learner/rl_module/default_policy/module_state.pkl", "rb"
            ) as f:
                state = pickle.load(f)
        except (FileNotFoundError, EOFError, pickle.UnpicklingError):
            continue  # partly written when the process died
        pi = [np.asarray(v, np.float64) for k, v in state.items() if k.startswith("pi.")]
        saved[iteration] = float(np.sqrt(sum(np.sum(v**2) for v in pi)))
    assert saved and max(saved) >= 2 and max(saved) < stop

    proc = run_main_train("--env", "point", "--alg", "maml", "--resume", str(exp))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = results(trial)
    iters = [r["training_iteration"] for r in rows]
    assert iters[-1] == stop
    # After the restart, iterations continue from a checkpoint (with its parameters), not from 1.
    restored = [
        it
        for it, norm in saved.items()
        if any(r["training_iteration"] == it + 1 for r in rows)
        and [r for r in rows if r["training_iteration"] == it + 1][-1]["meta"]["param_norm"]
        == pytest.approx(norm, rel=1e-6)
    ]
    assert restored, f"no checkpoint's parameters at the resumed iteration; checkpoints: {saved}"
    assert iters == list(range(1, stop + 1))  # each once: the rows a resume repeats were dropped
    # The Adam state continued too: `stop` iterations x num_outer_steps (5) steps in all.
    final = sorted(trial.glob("checkpoint_*"))[-1]
    with open(final / "learner_group/learner/state.pkl", "rb") as f:
        opt = pickle.load(f)["optimizer"]["default_policy_default_optimizer"]["state"]["state"]
    assert float(opt[0]["step"]) == stop * 5


def test_point_validation_logs_trajectory_images_to_tensorboard(tmp_path):
    """At validation an env whose observations hold positions (point) gets a trajectory plot per
    pool in the result, which Tune's TensorBoard logger writes as an image."""
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    proc = run_main_train(
        "--env", "point", "--alg", "maml", "--stop-iters", "1", *SMALL,
        "--set", "env_config.pool_size=4", "--set", "validation_freq=1",
        "--storage-path", str(tmp_path), "--name", "traj",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "traj")
    events = EventAccumulator(str(trial), size_guidance={IMAGES: 0})
    events.Reload()
    tags = events.Tags()[IMAGES]
    assert sorted(tags) == sorted(f"validation_trajectories/{p}" for p in ("D", "Dp", "Dpp"))
    # tesp's scalars under short top-level tags, pools named as the report's files; Ray's aside
    scalars = events.Tags()["scalars"]
    for tag in (
        "meta/return_post",
        "meta/adaptation_kl",
        "validation/Dpp/return_post",
        "validation/D/return_post",
    ):
        assert tag in scalars, (tag, sorted(scalars)[:20])
    assert not any(t.startswith("ray/tune/") for t in scalars)
    assert not any("'" in t for t in scalars)
    (image,) = events.Images(tags[0])
    assert image.width >= 100 and image.height >= 100
    # ... and only there: result.json keeps the validation returns, not the image's numbers.
    (row,) = results(trial)
    assert "validation_trajectories" not in json.dumps(row) and "D''" in json.dumps(row)


def test_the_console_holds_tesps_lines_only_unless_verbose(tmp_path):
    """Ray's and Tune's own lines (the configuration table, the token notice, worker log lines,
    deprecation notices) are off by default; --verbose brings them back."""
    args = ["--env", "point", "--alg", "maml", "--stop-iters", "1", "--storage-path", str(tmp_path), *SMALL]
    proc = run_main_train(*args, "--name", "quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tesp_line = re.compile(
        r"^(\[[0-9a-f]{5}_\d{5}\] (started|iter)|Experiment: |  trial |    results|    last checkpoint|Resume with: )"
    )
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    others = [line for line in lines if not tesp_line.match(line)]
    assert not others, others
    loud = run_main_train(*args, "--name", "loud", "--verbose")
    assert loud.returncode == 0 and "Started a local Ray instance" in loud.stdout + loud.stderr


def test_resolving_a_methods_settings_prints_nothing_of_rays_own(tmp_path):
    """Ray resets its loggers' levels as it loads; the quiet console sets them after (a
    primitives run printed RLlib's 'You are running Primitives on the new API stack!' and
    five empty-named DeprecationWarnings before the fix)."""
    code = (
        "import sys\n"
        "from tesp.commands.console import prepare_console\n"
        "prepare_console([])\n"
        "from tesp.commands.train import build_plan, make_parser\n"
        "for env, alg in (('walker_obstacle_course', 'primitives'), ('movement_bandits', 'mlsh'), ('point', 'tesp')):\n"
        "    build_plan(make_parser().parse_args(['--env', env, '--alg', alg]))\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
    assert proc.stderr.strip() == "", proc.stderr[-3000:]
