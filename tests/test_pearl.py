"""PEARL (tesp/algorithms/pearl): the posterior, the buffers, the gradient paths, a run."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from tesp.algorithms.pearl.context_encoder import kl_to_prior, product_of_gaussians
from tesp.algorithms.pearl.pearl import training_tasks
from tesp.algorithms.pearl.task_replay import TaskReplay, context_array

from .conftest import REPO
from .runner import results, run_main_train, trial_dirs


def test_the_posterior_is_the_product_of_the_factors_whatever_their_order():
    mean = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [0.5, 1.0]]])
    var = torch.tensor([[[1.0, 4.0], [0.5, 1.0], [2.0, 0.25]]])
    post_mean, post_var = product_of_gaussians(mean, var)
    precision = (1 / var).sum(dim=1)
    torch.testing.assert_close(post_var, 1 / precision)
    torch.testing.assert_close(post_mean, (mean / var).sum(dim=1) / precision)
    order = torch.tensor([2, 0, 1])
    shuffled = product_of_gaussians(mean[:, order], var[:, order])
    torch.testing.assert_close(shuffled[0], post_mean)
    # one factor: itself; more factors: a narrower posterior
    one = product_of_gaussians(mean[:, :1], var[:, :1])
    torch.testing.assert_close(one[0], mean[:, 0]) and torch.testing.assert_close(one[1], var[:, 0])
    assert torch.all(post_var < var.min(dim=1).values)
    assert kl_to_prior(torch.zeros(1, 5), torch.ones(1, 5)).item() == 0.0
    assert kl_to_prior(torch.ones(1, 5), torch.ones(1, 5)).item() == pytest.approx(2.5)


def test_a_task_buffer_keeps_its_newest_transitions_and_its_state():
    buffer = TaskReplay(capacity=5, obs_dim=2, action_dim=1)

    def steps(start: int, n: int) -> dict:
        t = np.arange(start, start + n, dtype=np.float32)
        return {"obs": np.stack([t, t], 1), "actions": t[:, None], "rewards": t, "next_obs": np.stack([t, t], 1) + 1,
                "terminateds": np.zeros(n)}  # fmt: skip

    buffer.add(steps(0, 3))
    buffer.add(steps(3, 4))  # 7 added: 0 and 1 overwritten
    assert buffer.size == 5 and sorted(buffer.data["rewards"]) == [2, 3, 4, 5, 6]
    drawn = buffer.sample(50, np.random.default_rng(0))
    assert set(drawn["rewards"]) <= {2, 3, 4, 5, 6} and np.all(
        drawn["next_obs"][:, 0] == drawn["rewards"] + 1
    )
    copy = TaskReplay(capacity=5, obs_dim=2, action_dim=1)
    copy.set_state(pickle.loads(pickle.dumps(buffer.get_state())))
    assert all(np.array_equal(copy.data[k], buffer.data[k]) for k in buffer.data) and copy.next == buffer.next
    context = context_array(drawn, next_obs=True)
    assert context.shape == (50, 2 + 1 + 1 + 2)
    assert context_array(drawn, next_obs=False).shape == (50, 4)
    np.testing.assert_array_equal(context[:, 3], drawn["rewards"])
    hidden = context_array(drawn, next_obs=True, reward=False)
    assert hidden.shape == context.shape and not hidden[:, 3].any()
    np.testing.assert_array_equal(np.delete(hidden, 3, axis=1), np.delete(context, 3, axis=1))
    buffer.clear()
    assert buffer.size == 0


def test_training_tasks_are_pool_d_or_an_even_spread_of_it():
    pool = [{"class": i // 50, "index": i} for i in range(500)]  # ordered by class, as ML10's
    assert training_tasks(None, 10) is None and training_tasks(pool[:80], 100) == pool[:80]
    chosen = training_tasks(pool, 100)
    assert len(chosen) == 100 and len({t["index"] for t in chosen}) == 100
    assert [sum(t["class"] == c for t in chosen) for c in range(10)] == [10] * 10


@pytest.mark.parametrize("dense", [False, True])
def test_dense_critic_reward_fills_the_rl_replay_with_the_dense_reward_and_the_context_with_the_envs(dense):
    """The release's sparse point robot: the actor-critic learns from the dense reward, z (and
    the reported returns) from the sparse one."""
    from types import SimpleNamespace

    from tesp.algorithms.pearl.pearl import DENSE_REWARD, PEARL

    episode = {
        "obs": np.zeros((3, 2), np.float32), "next_obs": np.ones((3, 2), np.float32),
        "actions": np.zeros((3, 2), np.float32), "terminateds": np.zeros(3, np.float32),
        "rewards": np.array([0.0, 0.9, 0.0], np.float32), DENSE_REWARD: np.array([-0.5, -0.1, -0.3], np.float32),
    }  # fmt: skip
    algo = SimpleNamespace(
        config=SimpleNamespace(dense_critic_reward=dense, env="point_robot_sparse", embedding_batch_size=4),
        replay=[TaskReplay(10, 2, 2)], encoder_replay=[TaskReplay(10, 2, 2)], train_tasks=[{}],
        task_env=SimpleNamespace(horizon=3), _latents=lambda context: None, _sample=lambda *args: [episode],
    )  # fmt: skip
    steps, returns = PEARL._collect(algo, 0, 3, posterior=False, to_encoder=True)
    assert steps == 3 and returns == [pytest.approx(0.9)]  # the env's (sparse) return is reported
    expected = episode[DENSE_REWARD] if dense else episode["rewards"]
    np.testing.assert_array_equal(algo.replay[0].data["rewards"][:3], expected)
    np.testing.assert_array_equal(algo.encoder_replay[0].data["rewards"][:3], episode["rewards"])
    if dense:  # an env without the dense reward is named
        algo.config.env = "point"
        algo._sample = lambda *args: [{k: v for k, v in episode.items() if k != DENSE_REWARD}]
        with pytest.raises(
            ValueError, match="dense_critic_reward=True needs an env whose step info has 'dense_reward'"
        ):
            PEARL._collect(algo, 0, 3, posterior=False, to_encoder=True)


def test_collection_adds_episodes_until_the_step_count_when_episodes_end_early():
    """An env whose episodes end after 4 of its 10 steps (a fallen ant): asking for 25 steps
    runs ceil(25 / 10) = 3 episodes (12 steps), then ceil(13 / 10) = 2, then 1: 24, then 1 more."""
    from types import SimpleNamespace

    from tesp.algorithms.pearl.pearl import PEARL

    def short(n):
        return {
            "obs": np.zeros((n, 2), np.float32), "next_obs": np.ones((n, 2), np.float32),
            "actions": np.zeros((n, 2), np.float32), "terminateds": np.eye(1, n, n - 1, dtype=np.float32)[0],
            "rewards": np.full(n, 0.5, np.float32),
        }  # fmt: skip

    calls = []

    def sample(task, latents, episodes):
        calls.append(episodes)
        return [short(4) for _ in range(episodes)]

    algo = SimpleNamespace(
        config=SimpleNamespace(dense_critic_reward=False, env="ant_dir", embedding_batch_size=4),
        replay=[TaskReplay(100, 2, 2)], encoder_replay=[TaskReplay(100, 2, 2)], train_tasks=[{}],
        task_env=SimpleNamespace(horizon=10), _latents=lambda context: None, _sample=sample,
    )  # fmt: skip
    steps, returns = PEARL._collect(algo, 0, 25, posterior=False, to_encoder=True)
    assert calls == [3, 2, 1, 1] and steps == 28 and returns == [pytest.approx(2.0)] * 7
    assert algo.replay[0].size == 28 and algo.encoder_replay[0].size == 28


def _module():
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from tesp.algorithms.pearl.pearl_rl_module import PEARLModule

    torch.manual_seed(0)
    obs_dim, latent, act = 3, 2, 2
    spec = RLModuleSpec(
        module_class=PEARLModule,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim + latent,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (act,), np.float32),
        model_config={
            "fcnet_hiddens": [16],
            "encoder_hiddens": [16],
            "latent_size": latent,
            "next_obs_in_context": True,
            "twin_q": True,
        },  # fmt: skip
    )
    module = spec.build()
    module.make_target_networks()  # the Learner does this when it builds
    return module, obs_dim, act


def test_the_critic_trains_the_encoder_and_the_actor_does_not():
    """The paper's gradient paths (Rakelly et al. 2019, §4.2): the critics read z with its
    gradient, the actor a detached z."""
    from ray.rllib.core.columns import Columns

    module, obs_dim, act = _module()
    tasks, rows, n_context = 2, 8, 5
    batch = {
        Columns.OBS: torch.randn(rows, obs_dim),
        Columns.NEXT_OBS: torch.randn(rows, obs_dim),
        Columns.ACTIONS: torch.rand(rows, act) * 2 - 1,
        "task": torch.tensor([0, 1] * (rows // 2)),
        "context": torch.randn(tasks, n_context, obs_dim + act + 1 + obs_dim),
    }
    encoder = list(module.context_encoder.parameters())

    def encoder_grad(loss) -> float:
        grads = torch.autograd.grad(loss, encoder, retain_graph=True, allow_unused=True)
        return sum(0.0 if g is None else float(g.abs().sum()) for g in grads)

    out = module._forward_train(batch)
    assert encoder_grad(out["qf_preds"].sum()) > 0 and encoder_grad(out["qf_twin_preds"].sum()) > 0
    assert encoder_grad(out["kl"]) > 0
    assert encoder_grad(out["q_curr"].sum() + out["logp_resampled"].sum()) == 0  # the actor's loss
    assert not out["q_target_next"].requires_grad
    # z drawn per task: rows of one task share it (the posterior's sample), and a context that
    # differs moves the critic's value
    again = module._forward_train(batch | {"context": batch["context"] + 3.0})
    assert not torch.allclose(again["qf_preds"], out["qf_preds"])


def test_one_backward_pass_gives_the_encoders_and_both_critics_gradients(monkeypatch):
    """The encoder's loss (both critics' losses + lambda KL) gives each critic its own loss's
    gradient: the same gradients as one backward pass per optimizer, in 3 passes instead of 5."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    import tesp.algorithms.pearl.pearl_learner as pl
    from tesp.algorithms.pearl.pearl import PEARLConfig

    obs_dim, latent, act, tasks, rows = 3, 5, 2, 2, 16
    space = gym.spaces.Box(-np.inf, np.inf, (obs_dim + latent,), np.float32)
    config = PEARLConfig().environment(observation_space=space, action_space=gym.spaces.Box(-1, 1, (act,)))
    config.rl_module(model_config={"fcnet_hiddens": [16], "encoder_hiddens": [16]})
    learner = config.build_learner(env=None, spaces={DEFAULT_MODULE_ID: (space, config.action_space)})
    rng = np.random.default_rng(0)
    batch = {
        "obs": rng.normal(size=(rows, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (rows, act)).astype(np.float32),
        "rewards": rng.normal(size=rows).astype(np.float32),
        "next_obs": rng.normal(size=(rows, obs_dim)).astype(np.float32),
        "terminateds": np.zeros(rows, np.float32),
        "task": np.repeat(np.arange(tasks), rows // tasks),
        "context": rng.normal(size=(tasks, 4, 2 * obs_dim + act + 1)).astype(np.float32),
    }
    recorded, passes = [], []
    monkeypatch.setattr(learner, "apply_gradients", lambda grads: recorded.append(grads))
    shared = pl._passes
    for split in (shared, lambda losses: [(loss, [name]) for name, loss in losses.items()]):
        monkeypatch.setattr(
            pl, "_passes", lambda losses, split=split: passes.append(split(losses)) or passes[-1]
        )
        torch.manual_seed(0)
        learner._update({DEFAULT_MODULE_ID: learner.tensors(batch)})
    assert [len(p) for p in passes] == [3, 5]  # encoder + both critics, actor, temperature; one each
    one, each = recorded
    encoder = {
        learner.get_param_ref(p) for p in learner.module[DEFAULT_MODULE_ID].context_encoder.parameters()
    }
    assert set(one) == set(each) and encoder < set(one)
    for key in one:
        torch.testing.assert_close(one[key], each[key])
    assert any(float(g.abs().sum()) > 0 for g in one.values())


@pytest.mark.ray
@pytest.mark.slow
def test_pearl_trains_validates_resumes_with_its_buffers_is_evaluated_and_rendered(tmp_path):
    common = [
        "--set", "num_train_tasks=3", "--set", "meta_batch_size=2", "--set", "num_initial_steps=40",
        "--set", "num_tasks_sample=2", "--set", "num_steps_prior=40", "--set", "num_extra_rl_steps_posterior=40",
        "--set", "num_train_steps_per_itr=4", "--set", "batch_size=16", "--set", "embedding_batch_size=8",
        "--set", "env_config.horizon=20", "--set", "env_config.pool_size=3", "--set", "validation_freq=2",
        "--set", "validation_pool_size=2", "--set", "model.fcnet_hiddens=[32]", "--set", "model.encoder_hiddens=[32]",
    ]  # fmt: skip
    proc = run_main_train(
        "--env", "point", "--alg", "pearl", "--stop-iters", "2", *common,
        "--storage-path", str(tmp_path), "--name", "pearl",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "pearl")
    rows = results(trial)
    # iteration 1: every training task's initial steps (3 x 40), then 2 tasks x (40 prior + 40
    # posterior): 7 collections of whole episodes of up to 20 steps, each reaching its count and
    # overshooting by less than an episode (an episode that reaches its goal ends early)
    steps = [r["meta"]["env_steps"] for r in rows]
    assert 3 * 40 + 2 * 80 <= steps[0] < 3 * 40 + 2 * 80 + 7 * 20 and 2 * 80 <= steps[1] < 2 * 80 + 4 * 20
    meta = rows[-1]["meta"]
    reported = {"return_stage_0", "return_stage_1", "return_post", "loss_qf_loss", "loss_policy_loss"}
    assert reported <= set(meta)
    assert meta["loss_kl_to_prior"] > 0  # the encoder's information cost, reported per iteration
    assert meta["time_sample_s"] > 0 and meta["time_update_s"] > 0
    assert sorted(rows[-1]["validation"]) == ["D", "D'", "D''"] and "validation" not in rows[0]
    for pool in rows[-1]["validation"].values():  # the prior's stage and two posterior stages
        assert {"return_stage_0", "return_stage_1", "return_stage_2"} <= set(pool)

    def buffers(checkpoint) -> list[int]:
        state = pickle.loads((checkpoint / "algorithm_state.pkl").read_bytes())["pearl"]
        return [b["size"] for b in state["replay"]]

    (first,) = trial.glob("checkpoint_*")
    before = buffers(first)
    assert sum(before) == rows[-1]["meta"]["env_steps_lifetime"] == sum(steps)
    resumed = run_main_train("--resume", str(tmp_path / "pearl"), "--stop-iters", "3")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    last = sorted(trial.glob("checkpoint_*"))[-1]
    added = results(trial)[-1]["meta"]["env_steps"]
    assert sum(buffers(last)) == sum(before) + added  # the buffers came back with the checkpoint
    assert results(trial)[-1]["meta"]["env_steps_lifetime"] == sum(before) + added
    out = tmp_path / "eval"
    tested = subprocess.run(
        [sys.executable, str(REPO / "main_test.py"), str(tmp_path / "pearl"), "--out", str(out), "--pool-size", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    (summary,) = out.glob("*-eval.json")
    stats = next(iter(next(iter(json.loads(summary.read_text())["pools"].values())).values()))
    assert stats["num_tasks"] == 2 and "return_stage_2" in stats
    drawn = subprocess.run(
        [sys.executable, str(REPO / "main_render.py"), str(tmp_path / "pearl"), "--out", str(tmp_path / "paths")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert drawn.returncode == 0, drawn.stdout[-3000:] + drawn.stderr[-3000:]
    assert (tmp_path / "paths.png").stat().st_size > 0
