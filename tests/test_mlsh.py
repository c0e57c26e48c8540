"""MLSH: the bandit envs' rules, the hierarchical policy's macro steps, and what each phase updates."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from tesp.algorithms.mlsh.mlsh_rl_module import MACRO_START, MASTER_LOGP, SUB_POLICY
from tesp.envs import make_env

from .conftest import REPO
from .helpers import local_learner
from .runner import results, run_main_train, trial_dirs


def greedy_to(target: np.ndarray, pos: np.ndarray) -> int:
    delta = target - pos
    if np.all(np.abs(delta) < 10):
        return 0
    if abs(delta[0]) >= abs(delta[1]):
        return 1 if delta[0] > 0 else 2
    return 3 if delta[1] > 0 else 4


def test_movement_bandits_reward_rule_gives_the_reference_levels():
    env = make_env("movement_bandits")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    levels = {"correct": [], "same": [], "random": []}
    for task in env.sample_tasks(2000):
        for kind, returns in levels.items():
            env.set_task(task)
            obs, _ = env.reset()
            target = env.goals[task["correct"] if kind == "correct" else 0]
            total = 0.0
            for t in range(50):
                pos = obs[:2] * 400
                action = rng.integers(5) if kind == "random" else greedy_to(target, pos)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += reward
                assert not terminated and truncated == (t == 49)
            returns.append(total)
    # Reference levels (docs/mlsh_reference.md): 43.8, 23.0, 2.4 per episode.
    assert np.mean(levels["correct"]) == pytest.approx(43.8, abs=0.5)
    assert np.mean(levels["same"]) == pytest.approx(23.0, abs=1.2)
    assert np.mean(levels["random"]) == pytest.approx(2.4, abs=0.4)


def test_movement_bandits_observation_start_and_goals_per_episode():
    env = make_env("movement_bandits")
    env.set_task({"correct": 1})
    obs, _ = env.reset(seed=0)
    goals = env.goals
    np.testing.assert_allclose(obs, np.concatenate([[200, 200], goals.ravel()]) / 400)
    assert env.action_space.n == 5 and env.observation_space.shape == (6,)
    assert env.get_task() == {"correct": 1}
    obs, reward, *_ = env.step(1)  # +20 in x
    np.testing.assert_allclose(obs[:2] * 400, [220, 200])
    assert reward == float(np.linalg.norm([220, 200] - goals[1]) < 50)
    # As in the reference, the goals move at every reset; the task (which goal pays) stays.
    drawn = np.array([env.reset()[0][2:] * 400 for _ in range(500)])
    assert drawn.min() >= 0 and drawn.max() <= 400 and drawn.std(0).min() > 100
    assert env.get_task() == {"correct": 1}
    with pytest.raises(ValueError, match="correct"):
        env.set_task({"correct": 2})


def test_ant_bandits_targets_and_reward():
    env = make_env("ant_bandits")
    env.reset(seed=0)
    goals = {tuple(t["goal"]) for t in env.sample_tasks(50)}
    assert goals == {(5.0, 0.0), (0.0, 5.0)}
    env.set_task({"goal": np.array([5.0, 0.0])})
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(8))
    assert reward == pytest.approx(-np.linalg.norm(env.position() - [5.0, 0.0]) / 5.0)
    assert not terminated and env.horizon == 1000 and env.observation_space.shape == (29,)


def test_sub_policy_advantages_are_standardised_per_sub_policy():
    from tesp.algorithms.mlsh.mlsh_learner import standardize_per_group

    rng = np.random.default_rng(0)
    groups = torch.as_tensor(rng.integers(0, 3, size=300))
    x = torch.as_tensor(rng.normal(size=300) + 5.0 * groups.numpy(), dtype=torch.float32)
    out = standardize_per_group(x, groups)
    for g in range(3):
        own = out[groups == g]
        assert abs(own.mean().item()) < 1e-5 and own.std().item() == pytest.approx(1.0, abs=1e-4)
    # Pooled standardisation would leave the groups' means apart.
    assert abs(out[groups == 2].mean() - out[groups == 0].mean()) < 1e-5


@pytest.fixture(scope="module")
def algo(ray_session):
    from tesp.settings import resolve_config

    config, _, _ = resolve_config(
        "mlsh",
        "movement_bandits",
        {"seed": 0, "episodes_per_task": 4, "num_envs_per_env_runner": 4, "warmup_iters": 2},
    )
    algo = config.build_algo()
    yield algo
    algo.stop()


@pytest.mark.ray
def test_master_acts_every_macro_duration_and_the_chosen_sub_policy_acts(algo):
    from tesp.meta.sampler import SampleJob

    learner = local_learner(algo)
    policy = learner.policy
    weights = learner.slot_weights([0])[0]
    task = algo.slots[0]["task"]
    batch = algo.sampler.sample([SampleJob(0, task, weights)])[0].batch
    n = algo.config.macro_duration
    for e in range(batch.obs.shape[0]):
        length = int(batch.mask[e].sum())
        starts = batch.extras[MACRO_START][e, :length]
        np.testing.assert_array_equal(np.flatnonzero(starts), np.arange(0, length, n))  # every N steps
        subs = batch.extras[SUB_POLICY][e, :length]
        for start in range(0, length, n):
            assert np.all(subs[start : start + n] == subs[start])  # one sub-policy per macro step
    flat = batch.to_torch()
    with torch.no_grad():
        # The executed actions were drawn from the chosen sub-policy's distribution ...
        expected = policy.sub_dist_inputs(flat["obs"], flat[SUB_POLICY])
        torch.testing.assert_close(flat["dist_inputs"], expected, rtol=1e-5, atol=1e-6)
        # ... which another sub-policy would not give,
        other = policy.sub_dist_inputs(flat["obs"], 1 - flat[SUB_POLICY])
        assert not torch.allclose(flat["dist_inputs"], other, atol=1e-4)
        # and the recorded master log-probability is the slot's master's.
        # (its softmax mixed with the uniform random choice: probability (1 - 0.1) p_k + 0.1 / K).
        probs = torch.softmax(policy.masters[0](flat["obs"]), -1).gather(
            -1, flat[SUB_POLICY].long().view(-1, 1)
        )
        expected_logp = torch.log(0.9 * probs.squeeze(-1) + 0.1 / policy.num_subs)
        at = flat[MACRO_START] > 0
        torch.testing.assert_close(flat[MASTER_LOGP][at], expected_logp[at], rtol=1e-5, atol=1e-6)


@pytest.mark.ray
def test_warmup_updates_only_the_master_and_the_joint_phase_both(algo):
    from tesp.meta.sampler import SampleJob

    learner = local_learner(algo)
    policy = learner.policy

    def snapshot():
        return {k: v.detach().clone() for k, v in policy.state_dict().items()}

    def changed(before, prefix):
        return any(
            not torch.equal(v, before[k]) for k, v in policy.state_dict().items() if k.startswith(prefix)
        )

    weights = learner.slot_weights([0, 1])
    jobs = [SampleJob(g, algo.slots[g]["task"], weights[g]) for g in (0, 1)]
    batches = {g: r.batch for g, r in algo.sampler.sample(jobs).items()}
    # A few episodes of an untrained policy often score 0 everywhere (zero advantages, zero
    # gradients); random rewards and advantages make every loss depend on the parameters.
    rng = np.random.default_rng(0)
    for b in batches.values():
        b.rewards = rng.normal(size=b.rewards.shape).astype(np.float32) * b.mask
        b.advantages = rng.normal(size=b.advantages.shape).astype(np.float32) * b.mask
    before = snapshot()
    learner.update_mlsh(batches, joint=[])
    assert changed(before, "masters.0.") and changed(before, "masters.1.")
    assert not changed(before, "subs.")
    before = snapshot()
    stats = learner.update_mlsh(batches, joint=[1])
    assert changed(before, "subs.") and changed(before, "masters.0.")
    assert np.isfinite(stats["sub_loss"]) and np.isfinite(stats["master_loss"])
    # A new task re-initialises its slot's master and forgets its optimizer state.
    before = snapshot()
    learner.reset_master(0)
    assert (
        changed(before, "masters.0.") and not changed(before, "masters.1.") and not changed(before, "subs.")
    )
    optimizer = learner.get_optimizer("default_policy", "master_0")
    assert not optimizer.state


def test_action_entropy_matches_torch_distributions():
    from tesp.algorithms.mlsh.mlsh_rl_module import MLSHModule

    for space in (gym.spaces.Discrete(5), gym.spaces.Box(-1, 1, (3,))):
        module = MLSHModule(
            observation_space=gym.spaces.Box(-1, 1, (4,)), action_space=space, model_config={"num_subs": 2}
        )
        dist_inputs = module.sub_dist_inputs(torch.randn(7, 4) * 30, torch.tensor([0, 1] * 3 + [0]))
        if module.discrete:
            expected = torch.distributions.Categorical(logits=dist_inputs).entropy()
        else:
            mean, log_std = dist_inputs.chunk(2, -1)
            expected = torch.distributions.Normal(mean, log_std.exp()).entropy().sum(-1)
        torch.testing.assert_close(module.action_entropy(dist_inputs), expected)


@pytest.mark.ray
def test_sub_entropy_bonus_spreads_the_sub_policies(algo, monkeypatch):
    from tesp.meta.sampler import SampleJob

    learner = local_learner(algo)
    policy = learner.policy
    weights = learner.slot_weights([0])
    batch = algo.sampler.sample([SampleJob(0, algo.slots[0]["task"], weights[0])])[0].batch
    # No policy-gradient signal at all: zero advantages (the linear-baseline mode takes them
    # from the batch) and a fixed observation filter.
    batch.advantages = np.zeros_like(batch.advantages)
    monkeypatch.setattr(learner.config, "baseline", "linear")
    monkeypatch.setattr(policy, "obs_normalization", False)
    obs = torch.as_tensor(batch.obs[batch.mask > 0])
    with torch.no_grad():
        for sub in policy.subs:
            sub[-1].bias.copy_(torch.tensor([4.0, 0, 0, 0, 0]))  # peaked sub-policies

    def entropy() -> float:
        with torch.no_grad():
            return sum(
                policy.action_entropy(policy.sub_dist_inputs(obs, torch.full((len(obs),), k))).mean().item()
                for k in range(policy.num_subs)
            )

    learner.get_optimizer("default_policy", "subs").state.clear()  # no momentum from earlier updates
    before = entropy()
    learner.update_mlsh({0: batch}, joint=[0])  # sub_entropy_coeff = 0: zero gradients
    assert entropy() == pytest.approx(before, abs=1e-6)
    monkeypatch.setattr(learner.config, "sub_entropy_coeff", 0.1)
    learner.update_mlsh({0: batch}, joint=[0])
    assert entropy() > before + 0.05


@pytest.mark.ray
def test_advantages_use_the_value_function_of_the_policy_that_acted(algo):
    """Sub-policy steps are credited against the acting sub-policy's value function, macro steps
    against the slot's master's; PPO's value loss then moves each value toward its targets."""
    from tesp.algorithms.mlsh.mlsh_learner import advantages_and_targets, macro_steps
    from tesp.meta.sampler import SampleJob

    learner = local_learner(algo)
    policy, cfg = learner.policy, learner.config
    weights = learner.slot_weights([0])
    batch = algo.sampler.sample([SampleJob(0, algo.slots[0]["task"], weights[0])])[0].batch
    batch.rewards = np.ones_like(batch.rewards) * batch.mask  # a return every value must learn
    with torch.no_grad():  # constant value functions: 3 for sub-policy 0, 7 for 1, -2 for the master
        for vf, level in [(policy.sub_vfs[0], 3.0), (policy.sub_vfs[1], 7.0), (policy.masters[0].vf, -2.0)]:
            vf[-1].weight.zero_()
            vf[-1].bias.fill_(level)
    subs = batch.extras[SUB_POLICY]
    expected_values = np.where(subs == 0, 3.0, 7.0) * batch.mask
    adv, targets = advantages_and_targets(
        batch.obs, batch.rewards, batch.mask, expected_values, cfg.gamma, cfg.gae_lambda
    )
    data = learner._sub_data([batch], learned=True)
    keep = batch.mask > 0
    torch.testing.assert_close(data["values"], torch.as_tensor(expected_values[keep], dtype=torch.float32))
    torch.testing.assert_close(data["targets"], torch.as_tensor(targets[keep]))
    macro = macro_steps(batch)
    master_data = learner._master_data(policy.masters[0], macro, learned=True)
    _, master_targets = advantages_and_targets(
        macro["obs"], macro["rewards"], macro["mask"], -2.0 * macro["mask"], cfg.gamma, cfg.gae_lambda
    )
    torch.testing.assert_close(master_data["targets"], torch.as_tensor(master_targets[macro["mask"] > 0]))
    # Master and sub-policy value functions move toward their (larger) targets (without the
    # value loss the zeroed heads would keep every value exactly at its level; the sub-policies
    # learn slowly, lr 3e-4 and a change clipped to +-0.2).
    for name in ("subs", "master_0"):  # no momentum from earlier updates
        learner.get_optimizer("default_policy", name).state.clear()
    learner.update_mlsh({0: batch}, joint=[0])
    with torch.no_grad():
        obs = torch.as_tensor(batch.obs[keep])
        assert policy.master_value(policy.masters[0], obs).mean() > -2.0 + 0.1
        for k, level in ((0, 3.0), (1, 7.0)):
            acted = torch.as_tensor(subs[keep]) == k
            if acted.any():
                assert policy.sub_values(obs[acted], torch.full((int(acted.sum()),), k)).mean() > level + 0.02


def test_running_mean_std_matches_the_statistics_of_everything_seen():
    from tesp.nn.normalization import RunningMeanStd

    rng = np.random.default_rng(0)
    parts = [rng.normal(loc=[3.0, -1.0], scale=[2.0, 0.01], size=(n, 2)) for n in (1, 17, 250)]
    f = RunningMeanStd(2, clip=5.0, min_var=1e-2)
    x = torch.as_tensor([[3.0, -1.0]])
    torch.testing.assert_close(f(x), x)  # identity before any update
    for p in parts:
        f.update(torch.as_tensor(p, dtype=torch.float32))
    seen = np.concatenate(parts)
    np.testing.assert_allclose(f.mean.numpy(), seen.mean(0), rtol=1e-6)
    np.testing.assert_allclose(f.var.numpy(), seen.var(0), rtol=1e-5)
    out = f(torch.as_tensor(seen, dtype=torch.float32)).numpy()
    assert abs(out[:, 0].mean()) < 1e-4 and out[:, 0].std() == pytest.approx(1.0, abs=1e-3)
    # The barely varying coordinate is divided by sqrt(min_var), not by its own tiny std.
    np.testing.assert_allclose(out[:, 1], (seen[:, 1] - seen[:, 1].mean()) / 0.1, rtol=1e-3, atol=1e-4)
    assert np.abs(f(torch.tensor([[1e3, 1e3]])).numpy()).max() == 5.0  # clipped


@pytest.mark.ray
def test_schedule_runs_warmup_then_joint_and_moves_to_new_tasks(algo, monkeypatch):
    cfg = algo.config  # W = 2, U = 1, two slots staggered by (W + U) // 2 = 1
    assert [s["step"] for s in algo.slots] == [0, 1]
    drawn: list[dict] = []
    draw = algo.task_env.sample_tasks

    def recorded(n):
        drawn.extend(draw(n))
        return drawn[-n:]

    monkeypatch.setattr(algo.task_env, "sample_tasks", recorded)
    joint = []
    for _ in range(3):
        result = algo.train()["mlsh"]
        joint.append(result["joint_slots"])
    # steps (0, 1) -> (1, 2*) -> (2*, 0) -> ...: one slot is in its joint phase in iterations 2 and 3.
    assert joint == [0, 1, 1]
    assert result["tasks_done"] == 2
    # Each slot finished its task once and now holds a task drawn when it did, at step 0 again
    # (slot 1 after iteration 2, then one more step; slot 0 after iteration 3).
    assert len(drawn) == 2
    assert [s["step"] for s in algo.slots] == [0, 1]
    assert algo.slots[1]["task"] is drawn[0] and algo.slots[0]["task"] is drawn[1]
    assert cfg.warmup_iters + cfg.joint_iters == 3


@pytest.mark.ray
def test_adaptation_trains_a_fresh_master_per_task_for_the_warmup_and_restores_the_learner(algo, monkeypatch):
    learner = local_learner(algo)
    before = {k: v.detach().clone() for k, v in learner.policy.state_dict().items()}
    updates, resets = [], []
    update, reset = learner.update_mlsh, learner.reset_master

    def recorded_update(batches, joint):
        updates.append((sorted(batches), list(joint)))
        return update(batches, joint)

    def recorded_reset(slot):
        resets.append(slot)
        return reset(slot)

    monkeypatch.setattr(learner, "update_mlsh", recorded_update)
    monkeypatch.setattr(learner, "reset_master", recorded_reset)
    tasks = [{"correct": c} for c in (0, 1, 1)]  # three tasks in two slots: two chunks
    rollout = algo.adapt_on_tasks(tasks)
    w = algo.config.warmup_iters
    assert len(rollout.stages) == w + 1 and all(len(stage) == 3 for stage in rollout.stages)
    # chunk (0, 1) then (2): fresh masters, then W master-only updates each
    assert resets == [0, 1, 0]
    assert updates == [([0, 1], [])] * w + [([0], [])] * w
    for stage in rollout.stages:
        assert [r.batch.obs.shape[0] for r in stage] == [algo.config.episodes_per_task] * 3
    after = learner.policy.state_dict()
    diff = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not diff, diff  # training is untouched


@pytest.mark.ray
@pytest.mark.slow
def test_mlsh_smoke_run_and_bad_flags(tmp_path):
    proc = run_main_train(
        "--env", "movement_bandits", "--alg", "mlsh", "-W", "2", "-U", "1", "--num-subs", "3",
        "--macro-duration", "5", "--stop-iters", "4", "--checkpoint-freq", "2",
        "--storage-path", str(tmp_path), "--name", "mlsh",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "mlsh")
    rows = results(trial)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    last = rows[-1]["mlsh"]
    for key in (
        "return",
        "return_post_warmup",
        "return_post_joint",
        "sub_choice_freq_2",
        "master_loss",
        "env_steps_per_s",
    ):
        assert key in last, key
    assert last["tasks_done"] >= 2 and np.isfinite(last["return_post_warmup"])
    assert (trial / "checkpoint_000001").is_dir() or list(trial.glob("checkpoint_*"))
    assert "after warm-up" in proc.stdout
    out = tmp_path / "bandits"
    render = subprocess.run(
        [sys.executable, "main_render.py", str(trial), "--num-tasks", "2", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert render.returncode == 0, render.stderr[-3000:]
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".svg").is_file()
    bad = run_main_train("--env", "movement_bandits", "--alg", "mlsh", "--num-subs", "0")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: num_subs=0 is invalid")


@pytest.mark.ray
@pytest.mark.slow
def test_ant_bandits_runs_at_a_quick_scale(tmp_path):
    proc = run_main_train(
        "--env", "ant_bandits", "--alg", "mlsh", "-W", "1", "-U", "1", "--macro-duration", "50",
        "--set", "env_config.horizon=100", "--stop-iters", "2", "--storage-path", str(tmp_path), "--name", "ant",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = results(trial_dirs(tmp_path / "ant")[0])
    assert [r["training_iteration"] for r in rows] == [1, 2]
    # 2 slots x 2 episodes of at most 100 steps (an ant that falls over ends its episode early).
    assert 2 * 2 <= rows[-1]["mlsh"]["env_steps"] <= 2 * 2 * 100
    assert np.isfinite(rows[-1]["mlsh"]["master_loss"])


class ToGoal(torch.nn.Module):
    """Logits of a greedy walk to goal ``goal`` of MovementBandits' observation."""

    def __init__(self, goal: int) -> None:
        super().__init__()
        self.goal = goal

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.numpy() * 400
        actions = [greedy_to(o[2 + 2 * self.goal : 4 + 2 * self.goal], o[:2]) for o in obs]
        return torch.nn.functional.one_hot(torch.tensor(actions), 5).float() * 50


def test_forced_sub_returns_score_each_sub_policy_on_each_task():
    from tesp.algorithms.mlsh.diagnostics import best_master_return, forced_sub_returns
    from tesp.algorithms.mlsh.mlsh_rl_module import MLSHModule

    env = make_env("movement_bandits")
    env.reset(seed=0)
    module = MLSHModule(
        observation_space=env.observation_space, action_space=env.action_space, model_config={"num_subs": 3}
    )
    module.subs[0], module.subs[2] = ToGoal(1), ToGoal(0)  # sub-policy 1 stays as initialised: ~random
    returns = forced_sub_returns(module, env, [{"correct": 0}, {"correct": 1}], episodes=60)
    # Rows: sub-policies; columns: tasks. The reference levels: 43.8 on the right goal, ~2 on
    # the other (23.0 on average), 2.4 for a uniformly random policy.
    assert returns[0, 1] > 40 and returns[2, 0] > 40, returns
    assert returns[0, 0] < 6 and returns[2, 1] < 6, returns
    assert np.all(returns[1] < 6), returns
    assert best_master_return(returns) == pytest.approx((returns[2, 0] + returns[0, 1]) / 2)


def test_forced_sub_returns_with_continuous_actions_use_the_mode_when_not_exploring():
    from tesp.algorithms.mlsh.diagnostics import forced_sub_returns
    from tesp.algorithms.mlsh.mlsh_rl_module import MLSHModule

    env = make_env("point")
    env.reset(seed=0)
    module = MLSHModule(
        observation_space=env.observation_space, action_space=env.action_space, model_config={"num_subs": 2}
    )
    tasks = env.sample_tasks(2)
    first = forced_sub_returns(module, env, tasks, episodes=2, explore=False)
    assert first.shape == (2, 2) and np.all(np.isfinite(first))
    np.testing.assert_allclose(forced_sub_returns(module, env, tasks, episodes=2, explore=False), first)
    assert not np.allclose(forced_sub_returns(module, env, tasks, episodes=2), first)
