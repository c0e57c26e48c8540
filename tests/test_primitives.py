"""``--alg primitives``: the meta-policy's macro steps, the transition windows, and which weights
training may change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tesp.algorithms.primitives.primitives_env import FROZEN, META, PrimitivesEnv, TerrainTracker
from tesp.envs import make_env

NAMES = ["walker_forward", "walker_jump"]
BASE = {"init_noise": 0.0, "kinds": ["curb"], "positions": [30.0], "jitter": 0.0}


def wrapped(switch_period=4, finetune="transitions", window=2, names=NAMES, switch_on_terrain=False):
    env = make_env("walker_obstacle_course", BASE)
    identity = [lambda obs: obs] * len(names)
    config = {"env": env, "primitives": dict.fromkeys(names, ""), "normalizers": identity}
    config |= {"switch_period": switch_period, "finetune": finetune, "transition_window": window}
    return PrimitivesEnv(config | {"switch_on_terrain": switch_on_terrain})


def test_meta_picks_every_n_steps_and_the_picked_primitive_acts():
    env, twin = wrapped(switch_period=4), make_env("walker_obstacle_course", BASE)
    obs, _ = env.reset(seed=3)
    twin_obs, _ = twin.reset(seed=3)
    np.testing.assert_allclose(obs[META], twin_obs, rtol=1e-6)
    rng = np.random.default_rng(0)
    for choice in (1, 1, 0):
        obs, rewards, *_ = env.step({META: choice})  # the choice alone does not step the env
        (agent,) = obs
        assert agent.split("__")[0] == NAMES[choice] and not rewards
        total = 0.0
        for step in range(4):
            action = rng.uniform(-1, 1, 6)
            obs, rewards, done, _, _ = env.step({agent: action})
            twin_obs, twin_reward, *_ = twin.step(action)  # the same action, executed
            total += twin_reward
            assert rewards[agent] == pytest.approx(twin_reward)
            if step < 3:
                (agent,) = obs
                np.testing.assert_allclose(obs[agent], twin_obs, rtol=1e-6)
            else:  # after exactly N steps, the meta-policy decides again and is paid their sum
                assert list(obs) == [META] and rewards[META] == pytest.approx(total)
                np.testing.assert_allclose(obs[META], twin_obs, rtol=1e-6)
            assert not done["__all__"]


def acting_ids(env, choices, steps=4):
    ids = []
    env.reset(seed=0)
    for choice in choices:
        obs, *_ = env.step({META: choice})
        for _ in range(steps):
            (agent,) = obs
            ids.append(agent)
            obs, *_ = env.step({agent: np.zeros(6)})
    return ids


def test_transition_windows_follow_switches_only():
    f, j = NAMES
    ids = acting_ids(wrapped(switch_period=4, window=2), [0, 0, 1, 1, 0])
    first, same, switch, stay, back = (ids[i : i + 4] for i in range(0, 20, 4))
    assert first == [f + FROZEN] * 4  # the episode's first pick is not a switch
    assert same == [f + FROZEN] * 4  # picking the acting primitive again is not a switch
    assert switch == [j, j, j + FROZEN, j + FROZEN]  # 2 trained steps after the switch
    assert stay == [j + FROZEN] * 4
    assert back == [f, f, f + FROZEN, f + FROZEN]


@pytest.mark.parametrize(("finetune", "trained"), [("all", True), ("none", False)])
def test_finetune_all_or_none(finetune, trained):
    ids = acting_ids(wrapped(finetune=finetune), [0, 1])
    assert all((FROZEN not in a) == trained for a in ids)


def test_episode_end_pays_the_meta_policy_and_reports_the_metrics():
    env = wrapped(switch_period=2000)
    env.reset(seed=0)
    obs, *_ = env.step({META: 0})
    total, done = 0.0, {"__all__": False}
    while not done["__all__"]:  # a still walker falls long before 2000 steps
        (agent,) = [a for a in obs if a != META]
        obs, rewards, done, _, infos = env.step({agent: np.zeros(6)})
        total += rewards[agent]
    assert META in obs and rewards[META] == pytest.approx(total)
    info = infos[META]
    assert info["env_return"] == pytest.approx(total) and info["obstacles_passed"] == 0
    assert info["choice/walker_forward"] == 1.0 and info["choice/walker_jump"] == 0.0


def scripted_terrain(env, changes_at):
    """Make ``env``'s terrain state change after the env steps in ``changes_at`` (counted from
    its reset); returns the step counter."""
    inner = env.unwrapped
    counter = {"steps": 0}
    step, reset = inner.step, inner.reset

    def counting_step(action):
        counter["steps"] += 1
        return step(action)

    def counting_reset(**kwargs):
        counter["steps"] = 0
        return reset(**kwargs)

    inner.step, inner.reset = counting_step, counting_reset
    inner.terrain_state = lambda: sum(counter["steps"] >= c for c in changes_at)
    return counter


def decision_steps(env, steps):
    """The env steps (from reset) after which the meta-agent decided, walking with zero torques."""
    obs, _ = env.reset(seed=0)
    decided, t = [], 0
    while t < steps:
        if list(obs) == [META]:
            decided.append(t)
            obs, *_ = env.step({META: 0})
        (agent,) = obs
        obs, _, done, _, _ = env.step({agent: np.zeros(6)})
        t += 1
        assert not done["__all__"]
    return decided


def test_switch_on_terrain_decides_when_the_terrain_changes_and_restarts_the_period():
    env = wrapped(switch_period=6, switch_on_terrain=True)
    scripted_terrain(env.env, changes_at=[4, 5, 13])
    # at reset; after the changes at steps 4, 5 and 13; and 6 steps after each decision
    assert decision_steps(env, 21) == [0, 4, 5, 11, 13, 19]
    off = wrapped(switch_period=6)
    scripted_terrain(off.env, changes_at=[4, 5, 13])
    assert decision_steps(off, 21) == [0, 6, 12, 18]  # the period alone


def test_the_test_controller_decides_where_training_did(monkeypatch):
    from tesp.algorithms.primitives.primitives import PrimitivesController

    env = make_env("walker_obstacle_course", BASE)
    counter = scripted_terrain(env, changes_at=[4, 5, 13])
    meta, skill, decided = object(), object(), []

    def action(module, obs, explore=False):
        if module is meta:
            decided.append(counter["steps"])
            return 0
        return np.zeros(6)

    monkeypatch.setattr("tesp.checkpoints.policies.module_action", action)
    identity = lambda obs: obs  # noqa: E731
    controller = PrimitivesController(meta, {"skill": skill}, [identity], identity, 6, TerrainTracker(env))
    obs, _ = env.reset(seed=0)
    controller.reset()
    for _ in range(21):
        obs, *_ = env.step(controller.act(obs))
    assert decided == [0, 4, 5, 11, 13, 19]


def test_the_walker_terrain_state_sees_the_next_obstacle_within_the_height_map():
    env = make_env("walker_obstacle_course", BASE)
    for start, in_view in ((3.0, False), (2.5, True)):
        env.unwrapped.set_task({"obstacles": (("curb", start + 0.1),)})  # a curb starting at `start`
        env.reset(seed=0)
        assert env.unwrapped.terrain_state() == (0, in_view)
    with pytest.raises(ValueError, match="terrain_state"):
        TerrainTracker(make_env("point"))


# -- training: which weights change ----------------------------------------------------------


def small(config, env="walker_obstacle_course", env_config=None):
    config.environment(env, env_config=env_config or dict(BASE, horizon=100))
    config.env_runners(num_env_runners=0, num_envs_per_env_runner=2)
    config.training(train_batch_size=400, minibatch_size=200, num_epochs=2, lr=1e-3)
    return config


@pytest.fixture(scope="module")
def skill_checkpoints(ray_session, tmp_path_factory):
    from tesp.algorithms.ppo import PPOConfig

    out = {}
    for name in NAMES:
        config = small(PPOConfig(), name, {"horizon": 100})
        algo = config.build_algo()
        algo.train()
        out[name] = str(algo.save_to_path(str(tmp_path_factory.mktemp(name))))
        algo.stop()
    return out


def weights(algo, module_id):
    results = algo.learner_group.foreach_learner(
        lambda learner: {k: v.detach().clone() for k, v in learner.module[module_id].state_dict().items()}
    )
    return next(iter(results)).get()


def saved_weights(checkpoint):
    from pathlib import Path

    from tesp.checkpoints.policies import restore_module

    return restore_module(Path(checkpoint)).state_dict()


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def train_once(skills, finetune, names=NAMES, switch_period=5):
    from tesp.algorithms.primitives import PrimitivesConfig

    config = small(PrimitivesConfig())
    config.primitives = {n: skills[n] for n in names}
    config.switch_period, config.finetune, config.transition_window = switch_period, finetune, 3
    algo = config.build_algo()
    meta_before = weights(algo, META)
    algo.train()
    return algo, meta_before


@pytest.mark.ray
@pytest.mark.slow
def test_frozen_primitives_do_not_change(skill_checkpoints):
    algo, meta_before = train_once(skill_checkpoints, "none")
    try:
        for name in NAMES:
            start = saved_weights(skill_checkpoints[name])
            assert same(weights(algo, name), start) and same(weights(algo, name + FROZEN), start)
        assert not same(weights(algo, META), meta_before)  # the meta-policy did learn
    finally:
        algo.stop()


@pytest.mark.ray
@pytest.mark.slow
def test_primitives_change_only_from_transition_states(skill_checkpoints):
    # One primitive: no switch ever happens, so no step is in a transition window.
    algo, _ = train_once(skill_checkpoints, "transitions", names=NAMES[:1])
    try:
        assert same(weights(algo, NAMES[0]), saved_weights(skill_checkpoints[NAMES[0]]))
    finally:
        algo.stop()
    # Two primitives picked at random by the untrained meta-policy: switches, windows, updates;
    # the acting copies follow the trained ones.
    algo, _ = train_once(skill_checkpoints, "transitions")
    try:
        changed = [not same(weights(algo, n), saved_weights(skill_checkpoints[n])) for n in NAMES]
        assert any(changed)
        for name in NAMES:
            assert same(weights(algo, name + FROZEN), weights(algo, name))
    finally:
        algo.stop()


@pytest.mark.ray
@pytest.mark.slow
def test_the_meta_policy_has_its_own_entropy_bonus_and_the_primitives_their_own_lr(skill_checkpoints):
    from tesp.algorithms.primitives import PrimitivesConfig

    config = small(PrimitivesConfig())
    config.primitives = dict(skill_checkpoints)
    config.finetune, config.entropy_coeff, config.meta_entropy_coeff = "all", 0.001, 0.03
    config.lr, config.finetune_lr = 3e-4, 2e-5
    algo = config.build_algo()
    try:
        settings = algo.learner_group.foreach_learner(
            lambda learner: {
                m: (
                    learner.entropy_coeff_schedulers_per_module[m].get_current_value(),
                    learner.get_optimizers_for_module(m)[0][1].param_groups[0]["lr"],
                )
                for m in [META, *NAMES]
            }
        )
        settings = next(iter(settings)).get()
        assert settings[META] == pytest.approx((0.03, 3e-4))
        assert all(settings[n] == pytest.approx((0.001, 2e-5)) for n in NAMES)  # the fine-tuned primitives'
    finally:
        algo.stop()


# -- the shipped skills (skills/) -------------------------------------------------------------


def test_the_shipped_skills_are_the_default_primitives_from_any_directory(tmp_path, monkeypatch):
    """``--alg primitives`` without ``--primitives`` uses ``skills/walker_*``, found below the
    repository from another working directory; each is a policy for the course's spaces, exported
    with its provenance."""
    import json

    from tesp.checkpoints.policies import REPO, policy_checkpoint, restore_module
    from tesp.settings import resolve_config

    monkeypatch.chdir(tmp_path)
    config, _, _ = resolve_config("primitives", "walker_obstacle_course")
    assert list(config.primitives) == ["walker_forward", "walker_jump", "walker_crawl"]
    env = make_env("walker_obstacle_course", {})
    for name, path in config.primitives.items():
        checkpoint = policy_checkpoint(path)
        assert checkpoint == REPO / "skills" / name
        module = restore_module(checkpoint)
        assert module.observation_space.shape == env.observation_space.shape
        assert module.action_space == env.action_space
        assert json.loads((checkpoint / "export.json").read_text())["env_steps"] > 0
    with pytest.raises(ValueError, match=r"^primitives: checkpoint 'skills/walker_run' does not exist$"):
        policy_checkpoint("skills/walker_run", what="primitives")


def test_a_saved_policy_loads_from_a_relative_path(monkeypatch):
    """A checkpoint named relative to the working directory loads (RLlib's reader refuses relative
    paths; the loaders resolve them)."""
    from tesp.checkpoints.policies import REPO, SavedPolicy

    monkeypatch.chdir(REPO / "skills")
    env = make_env("walker_obstacle_course", {})
    policy = SavedPolicy.from_checkpoint("walker_forward", env)
    obs, _ = env.reset(seed=0)
    assert np.isfinite(policy.act(obs)).all()


def test_a_skill_does_not_see_what_its_training_never_varied():
    """The shipped walker_forward trained on flat ground: its filter's std is 0 on the height
    map's ground row, which would turn a curb ahead into +-10 through weights that never had a
    gradient. It acts on a curb ahead as on flat ground; walker_jump (trained with curbs) and the
    meta-agent (trained on the course) see the curb."""
    from tesp.algorithms.primitives.primitives_env import from_checkpoint_filter
    from tesp.checkpoints.policies import REPO

    skills = {n: str(REPO / "skills" / n) for n in NAMES}
    curb_ahead = dict(BASE, positions=[2.0])
    env = PrimitivesEnv({"env": "walker_obstacle_course", "env_config": curb_ahead, "primitives": skills})
    env.reset(seed=0)
    seen = env._obs
    flat = seen.copy()
    flat[17:49] = 0.0  # the height map's ground row (after 8 positions and 9 velocities): no curb
    assert seen[17:49].max() == pytest.approx(0.4)  # the curb is in view
    forward, jump = env.normalizers
    np.testing.assert_array_equal(forward(seen), forward(flat))
    assert np.abs(jump(seen) - jump(flat)).max() > 1.0
    assert np.abs(env.meta_normalizer(seen) - env.meta_normalizer(flat)).max() > 1.0
    # On its own terrain nothing is held: the skill's view is its training filter's.
    plain = from_checkpoint_filter(skills["walker_forward"], env.env, hold_unseen=False)
    np.testing.assert_array_equal(forward(flat), plain(flat))
    assert np.abs(plain(seen) - plain(flat)).max() == pytest.approx(10.0)  # what holding avoids


def test_the_meta_observation_filter_normalises_the_meta_agent_only():
    import gymnasium as gym
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from tesp.algorithms.primitives.primitives import MetaObservationFilter

    box = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    connector = MetaObservationFilter(input_observation_space=gym.spaces.Dict({META: box, "skill": box}))
    rng = np.random.default_rng(0)
    seen = {META: [], "skill": []}
    for _ in range(200):
        episodes = []
        for agent in seen:
            obs = (rng.normal(5.0, 2.0, 3)).astype(np.float32)
            seen[agent].append(obs)
            episodes.append(SingleAgentEpisode(agent_id=agent, observations=[obs], observation_space=box))
        connector(rl_module=None, batch={}, episodes=episodes)
        meta_out, skill_out = (e.get_observations(-1) for e in episodes)
    np.testing.assert_array_equal(skill_out, seen["skill"][-1])  # passed through unchanged
    data = np.array(seen[META])
    expected = (data[-1] - data.mean(0)) / data.std(0)
    np.testing.assert_allclose(meta_out, expected, rtol=0.05, atol=0.05)  # the running mean and std
