"""The walker envs' rules, checked with scripted states (tesp.envs.walker)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tesp.envs import make_env
from tesp.envs.walker import HMAP_OFFSETS, NO_CEILING, height_map

WALKERS = ["walker_forward", "walker_jump", "walker_crawl", "walker_obstacle_course"]


def teleport(env, x: float, z: float | None = None, vx: float = 0.0) -> None:
    """Put the standing walker's torso at ``x`` (and height ``z``) with forward speed ``vx``."""
    qpos, qvel = env.init_qpos.copy(), env.init_qvel.copy()
    qpos[0] = x
    if z is not None:
        qpos[1] = z
    qvel[0] = vx
    env.set_state(qpos, qvel)


def course(obstacles, **kwargs):
    env = make_env("walker_obstacle_course", {"init_noise": 0.0, **kwargs})
    env.set_task({"obstacles": obstacles})
    env.reset(seed=0)
    return env


@pytest.mark.parametrize("name", WALKERS)
def test_check_env(name):
    check_env(make_env(name), skip_render_check=True)


def test_height_map_of_a_hand_placed_terrain():
    # A curb at x = 1 and a ceiling centred at 2.5 (span 1.0 - 4.0), seen from a torso at x = 0.
    ground, ceiling = height_map([("curb", 1.0), ("ceiling", 2.5)], 0.0)
    points = HMAP_OFFSETS
    assert np.array_equal(np.flatnonzero(ground), np.flatnonzero(np.abs(points - 1.0) <= 0.1 + 1e-9))
    assert set(ground) == {0.0, 0.4} and np.isclose(points[ground > 0], [0.9, 1.0, 1.1]).all()
    under = np.abs(points - 2.5) <= 1.5 + 1e-9
    assert (ceiling[under] == 0.9).all() and (ceiling[~under] == NO_CEILING).all()
    assert points[under].min() == pytest.approx(1.0) and points[under].max() == pytest.approx(2.6)


@pytest.mark.parametrize("curb_height", [0.4, 0.15])
def test_height_map_matches_the_model_geometry(curb_height):
    """The observed map equals what rays cast through the placed model see (the default curbs
    and lower ones)."""
    env = course([("curb", 1.05), ("ceiling", 2.37)], curb_height=curb_height)
    teleport(env, 0.0)
    obs = env._get_obs()
    ground, ceiling = obs[17:].reshape(2, -1)
    geomgroup = np.array([1, 0, 0, 0, 0, 0], np.uint8)  # group 0: terrain only
    gid = np.zeros(1, np.int32)
    for i, dx in enumerate(HMAP_OFFSETS):
        x = float(env.data.qpos[0]) + dx
        # Down from between the curbs' tops (0.4) and the ceilings' undersides (0.9), and up.
        down = mujoco.mj_ray(
            env.model, env.data, np.array([x, 0, 0.8]), np.array([0, 0, -1.0]), geomgroup, 1, -1, gid
        )
        assert 0.8 - down == pytest.approx(ground[i], abs=1e-6), dx
        up = mujoco.mj_ray(
            env.model, env.data, np.array([x, 0, 0.5]), np.array([0, 0, 1.0]), geomgroup, 1, -1, gid
        )
        seen = NO_CEILING if up < 0 or up > 1.0 else 0.5 + up
        assert seen == pytest.approx(ceiling[i], abs=1e-6), dx


def test_curb_collision_ends_the_episode():
    env = course([("curb", 0.2)])  # the front foot (x 0-0.2 at z 0.1) is inside it
    _, reward, terminated, _, info = env.step(np.zeros(6))
    assert info["collided"] and terminated
    calm = course([("curb", 5.0)])
    _, calm_reward, calm_terminated, _, calm_info = calm.step(np.zeros(6))
    assert not calm_info["collided"] and not calm_terminated
    assert calm_reward - reward > 9.0  # the -10 of the collision (the curb's bonuses: none yet)


def test_collision_is_reported_without_ending_when_allowed():
    env = course([("curb", 0.2)], done_on_collision=False)
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert info["collided"] and not terminated


def test_a_low_curb_collides_only_at_its_own_height():
    """A foot 0.1 m above the floor (the front foot of the standing pose) is inside the default
    curb and above one 0.05 m tall."""
    assert course([("curb", 0.2)], curb_height=0.15).step(np.zeros(6))[4]["collided"]
    env = course([("curb", 0.2)], curb_height=0.05)
    teleport(env, 0.0, z=env.init_qpos[1] + 0.02)  # feet lifted clear of the low curb's top
    assert not env.step(np.zeros(6))[4]["collided"]
    with pytest.raises(ValueError, match="curb_height=0.0 is invalid"):
        course([("curb", 0.2)], curb_height=0.0)


def test_standing_under_a_ceiling_collides():
    env = course([("ceiling", 5.0)])
    teleport(env, 5.0)  # torso top at 1.5 > the 0.9 underside
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert info["collided"] and terminated


def test_passing_an_obstacle_counts_once():
    env = course([("curb", 3.0), ("curb", 6.0)])
    teleport(env, 1.0)
    _, r_before, *_ = env.step(np.zeros(6))
    teleport(env, 4.7)  # 1.5 m past the first curb's far end (3.1), before the second
    _, r_pass, terminated, _, info = env.step(np.zeros(6))
    assert info["obstacles_passed"] == 1 and not terminated
    assert r_pass - r_before > 190.0  # the pass's +200 (the curb bonuses add more)
    for _ in range(3):  # staying past it does not count it again
        _, r, _, _, info = env.step(np.zeros(6))
        assert info["obstacles_passed"] == 1 and r < 50.0
    teleport(env, 7.7)
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert info["obstacles_passed"] == 2 and terminated and info["success"]  # all passed


def test_passing_too_slowly_ends_the_episode():
    # 3.7 m in one step is fast; the same pass after 500 steps (4 s: 0.9 m/s) is slow.
    fast = course([("curb", 2.0), ("curb", 9.0)], min_avg_speed=2.0)
    teleport(fast, 3.7)
    assert not fast.step(np.zeros(6))[2]
    slow = course([("curb", 2.0), ("curb", 9.0)], min_avg_speed=2.0)
    slow._t = 500
    teleport(slow, 3.7)
    _, _, terminated, _, info = slow.step(np.zeros(6))
    assert terminated and info["obstacles_passed"] == 1 and not info["success"]


def test_falling_ends_the_episode_except_low_under_a_ceiling():
    env = course([("curb", 20.0)])
    teleport(env, 0.0, z=0.7)
    assert env.step(np.zeros(6))[2]
    env = course([("ceiling", 5.0)])
    teleport(env, 3.0, z=0.7)  # 0.5 m before the ceiling: 0.7 is allowed (the limit is 0.3)
    assert not env.step(np.zeros(6))[2]


def test_jump_succeeds_past_the_finish_line():
    env = make_env("walker_jump", {"init_noise": 0.0})
    env.reset(seed=0)
    teleport(env, 14.0)
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert info["obstacles_passed"] == 1 and not terminated
    teleport(env, 15.1)
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert terminated and info["success"]


def test_walking_succeeds_by_surviving_the_horizon():
    env = make_env("walker_forward", {"horizon": 3, "push_prob": 0.0, "random_steps": 0})
    env.reset(seed=0)
    flags = [env.step(np.zeros(6)) for _ in range(3)]
    assert [f[4]["success"] for f in flags] == [False, False, True] and flags[-1][3]


def test_layouts_pinned_or_fresh():
    env = make_env("walker_obstacle_course")
    env.reset(seed=1)
    first = env.obstacles
    env.reset()
    assert env.obstacles != first  # a fresh layout per reset by default
    kinds = sorted(k for k, _ in first)
    assert kinds == ["ceiling", "ceiling", "curb", "curb", "curb"]
    xs = [x for _, x in first]
    assert all(abs(x - c) <= 0.5 for x, c in zip(xs, (8, 19, 30, 41, 52), strict=True))
    env.set_task({"obstacles": first})
    for _ in range(2):
        env.reset()
        assert env.obstacles == first
    placed = sorted(
        round(float(env.data.geom_xpos[g][0]), 6) for g in env.obstacle_geoms if env.data.geom_xpos[g][2] > 0
    )
    assert placed == sorted(round(x, 6) for x in xs)


def test_reduced_course_and_bad_options():
    env = make_env("walker_obstacle_course", {"kinds": ["curb", "ceiling"]})
    env.reset(seed=0)
    assert sorted(k for k, _ in env.obstacles) == ["ceiling", "curb"]
    with pytest.raises(ValueError, match="kinds"):
        make_env("walker_obstacle_course", {"kinds": ["wall"]})
    with pytest.raises(ValueError, match="push_prob"):
        make_env("walker_forward", {"push_prob": 2.0})


def test_curb_shaping_pays_each_checkpoint_once_and_the_jump_at_crossings():
    env = course([("curb", 3.0)])
    teleport(env, 3.02)  # standing, both ankles (the foot bodies) under the torso, at x = 3.02
    assert env.data.xpos[env.feet, 0] == pytest.approx([3.02, 3.02])
    # From 2.85, the rear foot crossed the curb's start and middle (2.9, 3.0): 200/3 + 400/3, once.
    assert env._curb_bonus(0.0, 0.0, 2.85, vz=0.0) == pytest.approx(200 / 3 + 400 / 3)
    assert env._curb_bonus(0.0, 0.0, 2.85, vz=0.0) == 0.0
    # The torso crossing two of the points (2.9 and 3.0) while rising at 3 m/s (clipped to 2).
    assert env._curb_bonus(2.85, 3.05, 3.02, vz=3.0) == pytest.approx(2 * 100 * 2.0)
    assert env._curb_bonus(3.05, 3.06, 3.02, vz=3.0) == 0.0  # between points: no jump bonus


def step_from(name: str, x: float = 0.0, vx: float = 1.5, **options):
    """One zero-action step of env ``name`` from the same scripted state (no pushes, no noise)."""
    env = make_env(name, {"init_noise": 0.0, "push_prob": 0.0, "random_steps": 0, **options})
    env.reset(seed=0)
    teleport(env, x, vx=vx)
    _, reward, *_ = env.step(np.zeros(6))
    q = env.data.qpos
    speed = 3.0 - abs((q[0] - x) / env.dt - 3.0)
    dh = q[1] - env.data.xpos[env.feet, 2].max()
    return reward, speed, abs(1.1 - dh)


def test_each_skill_has_the_anchors_speed_and_height_weights():
    """Lee et al.'s weights (x speed, height above the feet): walk 1 and 1, crawl 2 and 0, the
    course 2 and none away from ceilings. Same state and physics, so the rewards differ only there."""
    course_reward, speed, height = step_from("walker_obstacle_course", kinds=["curb"], positions=[40.0])
    forward_reward, speed_f, height_f = step_from("walker_forward")
    crawl_reward, *_ = step_from("walker_crawl", x=-20.0)  # far before the ceiling: no collision
    assert (speed_f, height_f) == pytest.approx((speed, height)) and speed > 1.0 and height > 0.01
    assert forward_reward == pytest.approx(course_reward - speed - height, abs=1e-9)
    crawl_course, *_ = step_from("walker_obstacle_course", x=-20.0, kinds=["curb"], positions=[40.0])
    assert crawl_reward == pytest.approx(crawl_course, abs=1e-9)


def test_crawling_falls_only_below_the_ceiling_height_limit():
    env = make_env("walker_crawl", {"init_noise": 0.0, "push_prob": 0.0, "random_steps": 0})
    env.reset(seed=0)
    teleport(env, -20.0, z=0.7)  # far from the ceiling, lower than a walker may be elsewhere
    assert not env.step(np.zeros(6))[2]
    assert make_env("walker_forward").min_height == 0.8


def test_pushes_hit_one_walker_body_in_the_plane_for_the_next_step():
    env = make_env("walker_forward", {"push_prob": 1.0, "push_force": 50.0, "random_steps": 0})
    env.reset(seed=0)
    walker = set(np.flatnonzero(env.model.body_rootid == env.torso))
    hit = []
    for _ in range(400):
        env.step(np.zeros(6))
        pushed = np.flatnonzero(np.abs(env.data.xfrc_applied).sum(axis=1))
        assert len(pushed) <= 1 and set(pushed) <= walker  # one body, never an obstacle
        if len(pushed):
            wrench = env.data.xfrc_applied[pushed[0]]
            assert np.all(wrench[[1, 3, 5]] == 0) and np.all(np.abs(wrench) <= 50.0)
        hit.append(pushed[0] if len(pushed) else 0)  # 0: the world drawn, no push
        if env.data.qpos[1] < 0.8:
            env.reset()
    counts = np.bincount(hit, minlength=env.model.nbody)[[0, *env.push_bodies]]
    assert counts.min() > 20  # the world (no push) and each of the 7 bodies, ~50 of 400 each
    # The wrench drawn after a step acts during the next one: the same step without it differs.
    env.reset(seed=1)
    env.step(np.zeros(6))
    while not np.abs(env.data.xfrc_applied).any():  # until a walker body (not the world) is pushed
        env.step(np.zeros(6))
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    pushed_next = env.step(np.zeros(6))[0]
    env.set_state(qpos, qvel)
    env.data.xfrc_applied[:] = 0.0
    calm_next = env.step(np.zeros(6))[0]
    assert np.abs(pushed_next - calm_next).max() > 1e-3


@pytest.mark.parametrize("name", WALKERS)
def test_every_walker_option_is_a_setting_with_its_own_default(name):
    """The skills pass options on with ``**kwargs``: the settings still know all of them."""
    from tesp.config_overrides import env_defaults
    from tesp.envs import ENVS

    defaults = env_defaults(ENVS[name])
    assert {"horizon", "push_prob", "push_force", "random_steps", "init_noise"} <= set(defaults)
    env = make_env(name)
    assert (env.push_force, env.random_steps, env.horizon) == (
        defaults["push_force"],
        defaults["random_steps"],
        defaults["horizon"],
    )


def test_next_obstacle_is_the_first_not_yet_passed():
    env = course([("curb", 3.0), ("ceiling", 8.0)])
    assert env.next_obstacle() == ("curb", pytest.approx(2.9))
    teleport(env, 4.7)  # past the curb (its end 3.1 + 1.5)
    env.step(np.zeros(6))
    assert env.next_obstacle() == ("ceiling", pytest.approx(6.5))
