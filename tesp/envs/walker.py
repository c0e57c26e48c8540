"""A planar walker on terrain: the three primitive skills and the obstacle course that needs them.

The skills and the course follow Lee et al. 2019 ("Composing complex skills by learning
transition policies", ICLR; its Walker2d obstacle course, Sec. 5 and appendix): walk forward,
jump over curbs, crawl under ceilings, then a course of 5 obstacles in random order that needs
all three. Facts (obstacle sizes and places, reward terms, termination rules, pushes) are the
anchor's, as read from its public implementation (youngwoon/transition); the model
(``assets/walker.xml``), the height map and the code are this project's.

**Terrain.** Obstacles are ``(kind, x)`` pairs: a *curb* is a box 0.2 m long and 0.4 m tall
centred at ``x`` (``curb_height`` changes the height: lower curbs make a curriculum for the jump,
``skills/README.md``); a *ceiling* is a slab 3 m long whose underside is 0.9 m above the floor
(top 1.1 m), centred at ``x``.

**Observation** (81): the torso's height and pitch and the 6 joint angles (``qpos[1:]``, 8), all
9 velocities clipped to +-10, then the height map: the terrain at :data:`HMAP_OFFSETS` (32
points, 0.1 m apart, from 0.5 m behind the torso to 2.6 m ahead of it) as two rows, the
ground's height (0, or 0.4 on a curb) and the ceiling's underside (0.9, or :data:`NO_CEILING`
where there is none). Why this grid: 0.1 m is half a curb's length, so every curb covers at
least one point; 2.6 m ahead is about 0.9 s at the target speed of 3 m/s (110 env steps), the
look-ahead of the anchor's obstacle observation (the next obstacle within 3 m); 0.5 m behind
covers the trailing foot while it crosses a curb. The anchor's ``qacc`` is left out (contact
accelerations are large and noisy; the height map replaces its two obstacle numbers).

**Action** (6): motor torques in ``[-1, 1]`` (clipped), gear 100. One env step is 4 physics
steps (0.008 s).

**Reward** (the anchor's dense terms, per step, with ``v_x``, ``v_z`` the torso's velocity over
the step and ``dh`` the torso's height above the higher foot): ``1 + w_v (3 - |v_x - 3|) + 0.1
cos(pitch) - w_h |1.1 - dh| - 0.01 (|dq_foot| + |dq_foot_left|) - 0.001 |a|^2``. The weights are
each env's in the anchor: walking ``w_v`` = 1, ``w_h`` = 1; jumping 2, 2; crawling 2, 0; the course
2 and 2, the height term there only while near a ceiling (within 3 m of its span). Then, where
obstacles are: for the next curb, ``+ 200 (i + 1) / 3`` as the rear foot crosses its start, middle
and end (``i`` = 0, 1, 2; each once here, where the anchor pays every crossing, back and forth) and
``+ 100 clip(v_z, -2, 2)`` at each step the torso crosses one of those points; +200 per obstacle
passed (each counts once: the torso 1.5 m past a curb's far end, 0.15 m past a ceiling's) and -10
on a collision.

**Termination**: a collision of the walker with an obstacle (``done_on_collision``); the torso's
centre below 0.8 m (0.3 m near a ceiling, and everywhere when crawling); a non-finite state; all obstacles passed; and, with
``min_avg_speed`` > 0, an obstacle passed at an average speed since the previous one below it.
The anchor has that last rule with 2 m/s, but divides the distance by one step's duration
instead of the interval's, so it never fires there; it is off (0) by default here.
Truncation after ``horizon`` steps.

**Success** (``info``): ``obstacles_passed`` counts the obstacles passed so far (0-5 on the
course); ``info["success"]`` is set on the step that completes the env's goal: the course and
the jump when the last obstacle is passed (the jump: the torso past x = 15), walking and
crawling when the horizon is reached without a fall or a collision.

**Tasks** are terrain layouts, ``{"obstacles": ((kind, x), ...)}``; ``{"obstacles": None}`` (the
default) draws a fresh layout at every reset, as the anchor does. :meth:`WalkerEnv.draw_tasks`
draws fixed layouts.

**Pushes**: after each step, with probability ``push_prob``, a random wrench acts during the
next step on one body drawn uniformly from the world (no effect) and the walker's 7 bodies: force
x and z and torque about y (the components that act in the walker's plane) each uniform in
``+-push_force`` (N, N m). This is the anchor's robustness noise for the primitives
(``_apply_external_force``: 100 for walking and jumping, 300 for crawling).

| name | obstacles | horizon | pushes | success |
|---|---|---|---|---|
| ``walker_forward`` | none | 1000 | 0.2, 100 | survive 1000 steps |
| ``walker_jump`` | a curb at 7 + U(-1.5, 1.5) | 1000 | 0.2, 100 | torso past x = 15 |
| ``walker_crawl`` | a 12 m ceiling from x = 2 | 1000 | 0.2, 300 | survive 1000 steps |
| ``walker_obstacle_course`` | 3 curbs, 2 ceilings, shuffled, at 8, 19, 30, 41, 52 (+-0.5) | 2500 | none | all passed |

The three skills start with 5 steps of random actions after the reset (the anchor's
``random_steps``); the course starts from the initial pose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from tesp.envs.base import Task, TaskEnv

ASSETS = Path(__file__).resolve().parent / "assets"

CURB_HALF_LENGTH, CURB_HEIGHT = 0.1, 0.4
CEILING_HALF_LENGTH, CEILING_UNDERSIDE, CEILING_HALF_THICKNESS = 1.5, 0.9, 0.1
NO_CEILING = 2.0  # the height map's ceiling row where there is no ceiling
HMAP_OFFSETS = np.round(np.arange(32) * 0.1 - 0.5, 10)  # x of the grid points, relative to the torso
SLOTS = 5  # curb and ceiling geoms in the model
NEAR_CEILING = (
    3.0  # m before and after a ceiling's span that count as near it (the anchor's detection distance)
)
PASS_MARGIN = {"curb": 1.5, "ceiling": 0.15}  # the torso this far past an obstacle's end has passed it
PARKED = np.array([0.0, 0.0, -10.0])  # an unused slot's place, under the floor
KINDS = ("curb", "ceiling")
Obstacle = tuple[str, float]


def half_length(kind: str) -> float:
    return CURB_HALF_LENGTH if kind == "curb" else CEILING_HALF_LENGTH


def height_map(obstacles, x: float, curb_height: float = CURB_HEIGHT) -> np.ndarray:
    """The two rows of the height map ``[2, len(HMAP_OFFSETS)]`` at torso position ``x``:
    ground heights and ceiling undersides over the grid."""
    points = x + HMAP_OFFSETS
    ground = np.zeros_like(points)
    ceiling = np.full_like(points, NO_CEILING)
    for kind, cx in obstacles:
        inside = np.abs(points - cx) <= half_length(kind) + 1e-9  # edges inclusive
        if kind == "curb":
            ground[inside] = curb_height
        else:
            ceiling[inside] = CEILING_UNDERSIDE
    return np.stack([ground, ceiling])


class WalkerEnv(MujocoEnv, TaskEnv):
    """The walker on a terrain of obstacles (module docstring); subclasses choose the terrain."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 125}
    frame_skip = 4
    success_rule = "passed"  # "passed": all obstacles passed; "survive": the horizon reached
    goal_x: float | None = None  # a finish line: passing it ends the episode with success (+100)
    speed_weight, height_weight = 2.0, 2.0  # w_v, w_h of the reward (module docstring)
    height_term_near_ceiling_only = True  # the course's rule; the skills pay it everywhere
    min_height = 0.8  # the torso's lowest centre before a fall (0.3 near a ceiling)

    def __init__(
        self,
        horizon: int = 1000,
        push_prob: float = 0.0,
        push_force: float = 0.0,
        init_noise: float = 0.01,
        random_steps: int = 0,
        min_avg_speed: float = 0.0,
        done_on_collision: bool = True,
        curb_height: float = CURB_HEIGHT,
        render_mode: str | None = None,
        width: int = 320,
        height: int = 240,
    ) -> None:
        checks = [
            (horizon >= 1, "horizon", horizon, ">= 1"),
            (0 <= push_prob <= 1, "push_prob", push_prob, "in [0, 1]"),
            (push_force >= 0, "push_force", push_force, ">= 0"),
            (init_noise >= 0, "init_noise", init_noise, ">= 0"),
            (random_steps >= 0, "random_steps", random_steps, ">= 0"),
            (min_avg_speed >= 0, "min_avg_speed", min_avg_speed, ">= 0"),
            (0 < curb_height <= 0.8, "curb_height", curb_height, "in (0, 0.8]"),
        ]
        for ok, name, value, valid in checks:
            if not ok:
                raise ValueError(f"{name}={value!r} is invalid: must be {valid}")
        self.horizon, self.push_prob, self.push_force = int(horizon), float(push_prob), float(push_force)
        self.init_noise, self.random_steps = float(init_noise), int(random_steps)
        self.min_avg_speed, self.done_on_collision = float(min_avg_speed), bool(done_on_collision)
        self.curb_height = float(curb_height)
        obs_dim = 17 + 2 * len(HMAP_OFFSETS)
        MujocoEnv.__init__(
            self,
            str(ASSETS / "walker.xml"),
            frame_skip=self.frame_skip,
            observation_space=spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float64),
            render_mode=render_mode,
            width=width,
            height=height,
            camera_name="side",
        )
        m = self.model
        self.torso = m.body("torso").id
        self.curb_slots = [m.body(f"curb{i}").mocapid[0] for i in range(SLOTS)]
        self.ceiling_slots = [m.body(f"ceiling{i}").mocapid[0] for i in range(SLOTS)]
        self.obstacle_geoms = np.array([m.geom(f"{k}{i}").id for k in KINDS for i in range(SLOTS)])
        curbs = self.obstacle_geoms[:SLOTS]  # this env's own model: resize its curbs
        m.geom_size[curbs, 2] = m.geom_aabb[curbs, 5] = self.curb_height / 2
        m.geom_rbound[curbs] = np.linalg.norm(m.geom_size[curbs], axis=1)
        self.walker_geoms = np.flatnonzero(m.body_rootid[m.geom_bodyid] == self.torso)
        # per geom id: 1 for an obstacle, 2 for a part of the walker (product 2: a collision)
        self._geom_kind = np.zeros(m.ngeom, dtype=np.int8)
        self._geom_kind[self.obstacle_geoms], self._geom_kind[self.walker_geoms] = 1, 2
        self.push_bodies = np.flatnonzero(m.body_rootid == self.torso)  # the walker's 7 bodies
        self.feet = [m.body("foot").id, m.body("foot_left").id]
        self.foot_dofs = [m.joint("foot").dofadr[0], m.joint("foot_left").dofadr[0]]
        self.obstacles: tuple[Obstacle, ...] = ()
        self._task_obstacles: tuple[Obstacle, ...] | None = None

    def _set_action_space(self) -> spaces.Box:
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.model.nu,), dtype=np.float32)
        return self.action_space

    # -- tasks -------------------------------------------------------------------------
    def layout(self, rng: np.random.Generator) -> tuple[Obstacle, ...]:
        """A terrain drawn with ``rng``: ``(kind, x)`` pairs in increasing x."""
        return ()

    def draw_tasks(self, n: int) -> list[Task]:
        return [{"obstacles": self.layout(self.np_random)} for _ in range(n)]

    def set_task(self, task: Task) -> None:
        """Pin a layout (takes effect at the next reset), or ``None``: a fresh one per reset."""
        obstacles = task.get("obstacles")
        if obstacles is not None:
            obstacles = tuple(sorted(((str(k), float(x)) for k, x in obstacles), key=lambda o: o[1]))
            curbs = sum(k == "curb" for k, _ in obstacles)
            if any(k not in KINDS for k, _ in obstacles) or curbs > SLOTS or len(obstacles) - curbs > SLOTS:
                raise ValueError(f"obstacles={obstacles!r} is invalid: at most {SLOTS} of each of {KINDS}")
        self._task_obstacles = obstacles

    def get_task(self) -> Task:
        return {"obstacles": self._task_obstacles}

    def place(self, obstacles) -> None:
        """Move the obstacle slots to ``obstacles`` (the rest under the floor); the next
        ``mj_forward`` (``set_state``) puts them in place."""
        self.obstacles = tuple(obstacles)
        used = {"curb": iter(self.curb_slots), "ceiling": iter(self.ceiling_slots)}
        self.data.mocap_pos[:] = PARKED
        for kind, x in self.obstacles:
            z = self.curb_height / 2 if kind == "curb" else CEILING_UNDERSIDE + CEILING_HALF_THICKNESS
            self.data.mocap_pos[next(used[kind])] = (x, 0.0, z)
        self._ends = np.array([x + half_length(k) + PASS_MARGIN[k] for k, x in self.obstacles])
        reach = CEILING_HALF_LENGTH + NEAR_CEILING
        spans = [(x - reach, x + reach) for k, x in self.obstacles if k == "ceiling"]
        self._ceilings = np.array(spans, dtype=np.float64).reshape(-1, 2)

    # -- state -------------------------------------------------------------------------
    def torso_x(self) -> float:
        return float(self.data.qpos[0])

    def next_obstacle(self) -> tuple[str, float] | None:
        """The next obstacle not yet passed: its kind and the x where it starts; None after the last."""
        if self._passed >= len(self.obstacles):
            return None
        kind, x = self.obstacles[self._passed]
        return kind, x - half_length(kind)

    def terrain_state(self) -> tuple[int, bool]:
        """What a choice of skill hangs on: the obstacles passed so far, and whether the next one
        is in the height map's view (starts within its reach ahead of the torso). A meta-policy
        over the skills may decide whenever it changes (``switch_on_terrain``)."""
        nxt = self.next_obstacle()
        return self._passed, nxt is not None and nxt[1] - self.torso_x() <= HMAP_OFFSETS[-1]

    def near_ceiling(self, x: float) -> bool:
        c = self._ceilings
        return bool(((c[:, 0] <= x) & (x <= c[:, 1])).any())

    def collided(self) -> bool:
        """Whether any contact joins an obstacle and a part of the walker."""
        n = self.data.ncon
        if n == 0:
            return False
        kinds = self._geom_kind[self.data.contact.geom[:n]]
        return bool(((kinds[:, 0] * kinds[:, 1]) == 2).any())

    def _get_obs(self) -> np.ndarray:
        q, v = self.data.qpos, self.data.qvel
        hmap = height_map(self.obstacles, float(q[0]), self.curb_height)
        return np.concatenate([q[1:], np.clip(v, -10.0, 10.0), hmap.ravel()])

    def reset_model(self) -> np.ndarray:
        if self._task_obstacles is None:
            self.place(self.layout(self.np_random))
        else:
            self.place(self._task_obstacles)
        r = self.init_noise
        qpos = self.init_qpos + self.np_random.uniform(-r, r, self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-r, r, self.model.nv)
        self.set_state(qpos, qvel)
        for _ in range(self.random_steps):
            self.do_simulation(self.np_random.uniform(-1, 1, self.model.nu), self.frame_skip)
        self._t, self._passed, self._curb_stage = 0, 0, 0
        self._last_pass = (self.torso_x(), 0)
        self._failed = False
        return self._get_obs()

    # -- dynamics ----------------------------------------------------------------------
    def _push(self) -> None:
        """Draw the next step's push (module docstring): ``xfrc_applied`` holds it until then."""
        wrench = self.data.xfrc_applied
        wrench[self.push_bodies] = 0.0
        if self.push_prob > 0 and self.np_random.random() < self.push_prob:
            k = self.np_random.integers(len(self.push_bodies) + 1)  # the last: the world, no push
            if k < len(self.push_bodies):
                wrench[self.push_bodies[k], [0, 2, 4]] = self.np_random.uniform(
                    -self.push_force, self.push_force, 3
                )

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        x_before, z_before = float(self.data.qpos[0]), float(self.data.qpos[1])
        rear_before = float(self.data.xpos[self.feet, 0].min())
        self.do_simulation(a, self.frame_skip)
        self._push()
        self._t += 1
        q, v = self.data.qpos, self.data.qvel
        x, z, pitch = float(q[0]), float(q[1]), float(q[2])
        vx, vz = (x - x_before) / self.dt, (z - z_before) / self.dt
        near = self.near_ceiling(x)
        reward = (
            1.0
            + self.speed_weight * (3.0 - abs(vx - 3.0))
            + 0.1 * np.cos(pitch)
            - 0.01 * float(np.abs(v[self.foot_dofs]).sum())
            - 1e-3 * float(a @ a)
        )
        if self.height_weight and (near or not self.height_term_near_ceiling_only):
            # The torso's height above the higher foot, kept near 1.1.
            dh = z - float(self.data.xpos[self.feet, 2].max())
            reward -= self.height_weight * abs(1.1 - dh)
        reward += self._curb_bonus(x_before, x, rear_before, vz)
        passed_now, slow = self._count_passes(x)
        reward += 200.0 * passed_now
        collided = self.collided()
        if collided:
            reward -= 10.0
        finite = bool(np.isfinite(q).all() and np.isfinite(v).all())
        fell = z < (0.3 if near else self.min_height)
        if self.goal_x is None:
            done_all = bool(self.obstacles) and self._passed == len(self.obstacles)
        else:
            done_all = x > self.goal_x
            reward += 100.0 * done_all
        terminated = (collided and self.done_on_collision) or fell or not finite or done_all or slow
        truncated = self._t >= self.horizon and not terminated
        self._failed |= bool(collided or fell or not finite or slow)
        success = done_all and not slow if self.success_rule == "passed" else truncated and not self._failed
        info = {
            "obstacles_passed": self._passed,
            "success": bool(success),
            "collided": collided,
            "x": x,
        }
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), float(reward), bool(terminated), bool(truncated), info

    def _curb_bonus(self, x_before: float, x: float, rear_before: float, vz: float) -> float:
        """The anchor's shaping for the next obstacle when it is a curb, at its start, middle and
        end: ``200 (i + 1) / 3`` as the rear foot first crosses point ``i``, and
        ``100 clip(v_z, -2, 2)`` at each step the torso crosses one of the points."""
        if self._passed >= len(self.obstacles) or self.obstacles[self._passed][0] != "curb":
            return 0.0
        cx = self.obstacles[self._passed][1]
        points = (cx - CURB_HALF_LENGTH, cx, cx + CURB_HALF_LENGTH)
        rear = float(self.data.xpos[self.feet, 0].min())
        bonus = 0.0
        while self._curb_stage < 3 and rear_before <= points[self._curb_stage] < rear:
            self._curb_stage += 1
            bonus += 200.0 * self._curb_stage / 3
        crossed = sum(x_before <= p < x for p in points)
        return bonus + 100.0 * float(np.clip(vz, -2.0, 2.0)) * crossed

    def _count_passes(self, x: float) -> tuple[int, bool]:
        """Obstacles the torso passed this step (each once) and whether one was passed too slowly."""
        passed, slow = 0, False
        while self._passed < len(self.obstacles) and x > self._ends[self._passed]:
            self._passed += 1
            passed += 1
            self._curb_stage = 0
            x0, t0 = self._last_pass
            speed = (x - x0) / max((self._t - t0) * self.dt, 1e-9)
            slow |= self.min_avg_speed > 0 and speed < self.min_avg_speed
            self._last_pass = (x, self._t)
        return passed, slow


class WalkerSkillEnv(WalkerEnv):
    """A primitive skill's env: random pushes and 5 random steps after the reset by default."""

    height_term_near_ceiling_only = False

    def __init__(
        self, push_prob: float = 0.2, push_force: float = 100.0, random_steps: int = 5, **kwargs
    ) -> None:
        super().__init__(push_prob=push_prob, push_force=push_force, random_steps=random_steps, **kwargs)


class WalkerForwardEnv(WalkerSkillEnv):
    """Walk forward on flat ground under random pushes; success = 1000 steps without a fall."""

    success_rule = "survive"
    speed_weight, height_weight = 1.0, 1.0


class WalkerJumpEnv(WalkerSkillEnv):
    """Jump over one curb at 7 + U(-1.5, 1.5); success (and the end) once the torso is past x = 15."""

    goal_x = 15.0

    def layout(self, rng: np.random.Generator) -> tuple[Obstacle, ...]:
        return (("curb", 7.0 + float(rng.uniform(-1.5, 1.5))),)


class WalkerCrawlEnv(WalkerSkillEnv):
    """Crawl under a ceiling 12 m long from x = 2 under random pushes; success = 1000 steps
    without a collision or a fall. The ceiling is four 3 m slabs end to end."""

    success_rule = "survive"
    height_weight, min_height = 0.0, 0.3

    def __init__(self, push_force: float = 300.0, **kwargs) -> None:
        super().__init__(push_force=push_force, **kwargs)

    def layout(self, rng: np.random.Generator) -> tuple[Obstacle, ...]:
        return tuple(("ceiling", 2.0 + CEILING_HALF_LENGTH * (2 * i + 1)) for i in range(4))

    def _count_passes(self, x: float) -> tuple[int, bool]:
        return 0, False  # survival is the goal; no pass bonuses under one long ceiling


class WalkerObstacleCourseEnv(WalkerEnv):
    """The course: ``kinds`` (3 curbs and 2 ceilings) in random order at ``positions`` (8, 19,
    30, 41, 52), each moved by U(-0.5, 0.5); a shorter ``kinds`` uses the first positions (e.g.
    ``kinds=["curb", "ceiling"]`` for a reduced course)."""

    def __init__(
        self,
        kinds=("curb", "curb", "curb", "ceiling", "ceiling"),
        positions=(8.0, 19.0, 30.0, 41.0, 52.0),
        jitter: float = 0.5,
        shuffle: bool = True,
        horizon: int = 2500,
        **kwargs,
    ) -> None:
        kinds = tuple(kinds)
        if any(k not in KINDS for k in kinds) or not 1 <= len(kinds) <= len(positions):
            raise ValueError(f"kinds={kinds!r} is invalid: 1 to {len(positions)} of {KINDS}")
        if sum(k == "curb" for k in kinds) > SLOTS or sum(k == "ceiling" for k in kinds) > SLOTS:
            raise ValueError(f"kinds={kinds!r} is invalid: at most {SLOTS} of each kind")
        self.kinds, self.positions = kinds, tuple(float(p) for p in positions)
        self.jitter, self.shuffle = float(jitter), bool(shuffle)
        super().__init__(horizon=horizon, **kwargs)

    def layout(self, rng: np.random.Generator) -> tuple[Obstacle, ...]:
        kinds = list(self.kinds)
        if self.shuffle:
            rng.shuffle(kinds)
        xs = np.asarray(self.positions[: len(kinds)]) + rng.uniform(-self.jitter, self.jitter, len(kinds))
        return tuple((k, float(x)) for k, x in zip(kinds, xs, strict=True))
