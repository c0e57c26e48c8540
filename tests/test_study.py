"""``main_study.py``: the whole comparison from one command (train, evaluate, report), resumable."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tesp.registry import method_names
from tesp.report.runs import method_name

from .conftest import REPO
from .runner import kill_orphaned_ray, pids, results, trial_dirs

# The smoke study's methods: one of each kind the pipeline handles (a policy adapted by gradient,
# a per-task latent, TESP's encoder with its noise sweep and the report's reference); every
# method's own training, evaluation and report are tested in its own files. (All seven took
# 5-7 minutes of CI.)
SMOKE_ALGS = ["maml", "maesn", "tesp"]
SIGMAS = ["0.0", "0.01", "0.05", "0.1"]


def run_study(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "main_study.py"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.ray
@pytest.mark.slow
def test_smoke_study_trains_evaluates_reports_and_resumes(tmp_path):
    proc = run_study(
        "tesp_paper", "--scale", "smoke", "--seeds", "0", "--algs", ",".join(SMOKE_ALGS),
        "--storage-path", str(tmp_path), "--name", "s",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "s"
    trials = trial_dirs(root)
    # one Tune experiment: the methods on both envs, and TESP's noise sweep on the ant
    expected = {(alg, env) for alg in SMOKE_ALGS for env in ("wheeled", "reacher_2_link")} | {("tesp", "ant")}
    found = set()
    for trial in trials:
        params = json.loads((trial / "params.json").read_text())
        evaluation = json.loads((trial / "checkpoint_000001-eval.json").read_text())
        found.add((method_name(evaluation["algorithm"], method_names()), params["env"]))
        assert [r["training_iteration"] for r in results(trial)] == [1, 2]
        # every checkpoint evaluated on every pool: the final one at every noise level, the earlier without noise
        checkpoints = sorted(trial.glob("checkpoint_*/"))
        assert len(checkpoints) == 2
        for checkpoint, sigmas in zip(checkpoints, (["0.0"], SIGMAS), strict=True):
            pools = json.loads((trial / f"{checkpoint.name}-eval.json").read_text())["pools"]
            assert sorted(pools) == ["D", "D'", "D''"] and all(sorted(p) == sigmas for p in pools.values())
    assert found == expected
    report = (root / "report" / "report.md").read_text()
    for section in (
        "## wheeled",
        "## reacher_2_link",
        "## ant",
        "## Observation noise: ant tesp",
        "## Differences against tesp",
        "## Results",
    ):
        assert section in report
    assert (root / "report" / "report.pdf").stat().st_size > 0

    # Resuming a finished study trains and evaluates nothing again, and rewrites the report.
    stamps = {p: p.stat().st_mtime for p in root.glob("*/checkpoint_*-eval.json")}
    again = run_study("--resume", str(root))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[study] evaluated" not in again.stdout
    assert {p: p.stat().st_mtime for p in root.glob("*/checkpoint_*-eval.json")} == stamps
    assert all([r["training_iteration"] for r in results(t)] == [1, 2] for t in trial_dirs(root))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["nope"],
            "unknown study 'nope'; choose from: context_vs_gradient, exploration, tesp_ablations, tesp_outer_steps, tesp_paper",
        ),
        (["tesp_paper", "--scale", "huge"], "unknown --scale 'huge'; choose from: paper, laptop, smoke"),
        (["tesp_paper", "--iters", "0"], "--iters '0' must be an integer >= 1"),
        (["tesp_paper", "--iters", "x"], "--iters 'x' must be an integer >= 1"),
        (["tesp_paper", "--seeds", "a,b"], "--seeds 'a,b' must be comma-separated integers >= 0"),
        (["tesp_paper", "--algs", "maml,mlsh"], "--algs: 'mlsh' is not in this study; choose from: maml"),
        (["tesp_paper", "--envs", "point"], "--envs: 'point' is not in this study; choose from: wheeled"),
        (["tesp_paper", "--scale", "paper"], "a trial needs 2 CPUs"),
        (["--resume", "/nonexistent"], "--resume '/nonexistent': no study there"),
        (
            [],
            "name a study (choose from: context_vs_gradient, exploration, tesp_ablations, tesp_outer_steps, tesp_paper) or --resume a study's folder",
        ),
        (
            ["tesp_ablations", "--algs", "tesp-k4"],
            "--algs: 'tesp-k4' is not in this study; choose from: tesp, meta_sgd, tesp-k3",
        ),
        (["../studies/tesp_paper"], "unknown study '../studies/tesp_paper'"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, expected, capsys, monkeypatch):
    from tesp.commands.study import main

    monkeypatch.setattr("os.cpu_count", lambda: 1)  # so that the paper scale cannot fit here
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), lines


def test_variants_are_the_method_with_their_settings_under_their_own_name():
    from tesp.commands.study import build_plan, make_parser

    plan = build_plan(
        make_parser().parse_args(["tesp_ablations", "--scale", "laptop", "--storage-path", "/tmp"])
    )
    by_name = {n: t for n, t in zip(plan.names, plan.trials, strict=True)}
    assert list(by_name) == [
        "TESP",
        "MetaSGD",
        "tesp-k3",
        "tesp-buffer16",
        "tesp-second-order",
        "tesp-last-iterate",
        "tesp-action-inputs",
    ]
    base, k3 = by_name["TESP"].config, by_name["tesp-k3"].config
    assert (base.num_inner_steps, k3.num_inner_steps) == (1, 3)  # the laptop scale's K, and the variant's
    assert k3.buffer_size == base.buffer_size == 8 and k3.num_outer_steps == base.num_outer_steps == 5
    assert by_name["tesp-buffer16"].config.buffer_size == 16
    assert by_name["tesp-second-order"].config.second_order and not base.second_order
    assert by_name["tesp-last-iterate"].config.best_iterate_kl_target == 0 < base.best_iterate_kl_target
    assert base.encoder_inputs == "distribution"
    assert by_name["tesp-action-inputs"].config.encoder_inputs == "action"


@pytest.mark.parametrize(
    ("envs", "expected"),
    [
        (
            None,
            {
                ("TESP", "wheeled"),
                ("TESP", "reacher_2_link"),
                ("TESP", "ant"),
                ("MAML", "wheeled"),
                ("MAML", "reacher_2_link"),
            },
        ),
        ("ant", {("TESP", "ant")}),  # the noise sweep alone
        ("wheeled", {("TESP", "wheeled"), ("MAML", "wheeled")}),
        ("wheeled,ant", {("TESP", "wheeled"), ("MAML", "wheeled"), ("TESP", "ant")}),
    ],
)
def test_envs_pick_the_trials_and_naming_the_sweeps_env_runs_the_sweep_alone(envs, expected):
    from tesp.commands.study import build_plan, make_parser
    from tesp.commands.train import ConfigError

    args = ["tesp_paper", "--algs", "tesp,maml", "--storage-path", "/tmp"] + (
        ["--envs", envs] if envs else []
    )
    plan = build_plan(make_parser().parse_args(args))
    assert {(n, t.env) for n, t in zip(plan.names, plan.trials, strict=True)} == expected
    # --resume repeats these envs, whatever the study file says by then
    assert set(plan.recorded["envs"].split(",")) == {env for _, env in expected}
    without = {(n, e) for n, e in expected if e != "ant"}
    if without:
        no_sweep = build_plan(make_parser().parse_args([*args, "--no-noise-sweep"]))
        assert {(n, t.env) for n, t in zip(no_sweep.names, no_sweep.trials, strict=True)} == without
    else:
        with pytest.raises(ConfigError, match="leave no trial in this study"):
            build_plan(make_parser().parse_args([*args, "--no-noise-sweep"]))


def test_env_settings_of_a_scale_apply_to_that_envs_trials_only():
    from tesp.commands.study import build_plan, make_parser

    plan = build_plan(
        make_parser().parse_args(["exploration", "--scale", "laptop", "--storage-path", "/tmp"])
    )
    iters = {
        (n, t.env): (t.run["stop_iters"], t.config.validation_freq)
        for n, t in zip(plan.names, plan.trials, strict=True)
    }
    assert iters == {
        (alg, env): ((25, 25) if env == "nav_dog_feeding" else (53, 25))
        for alg in ("MAML", "EMAML", "MIME")
        for env in ("nav_wide_ring", "nav_dog_feeding")
    }
    # --iters sets every trial's length (env settings too), and --resume repeats it
    plan = build_plan(make_parser().parse_args(["exploration", "--iters", "7", "--storage-path", "/tmp"]))
    assert {t.run["stop_iters"] for t in plan.trials} == {7} and plan.recorded["iters"] == "7"


@pytest.mark.ray
@pytest.mark.slow
def test_a_variant_trains_and_is_reported_under_its_name(tmp_path):
    proc = run_study(
        "tesp_ablations", "--scale", "smoke", "--seeds", "0", "--algs", "tesp-k3",
        "--storage-path", str(tmp_path), "--name", "v",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "v")
    assert trial.name.startswith("tesp-k3_wheeled")
    assert json.loads((trial / "params.json").read_text())["num_inner_steps"] == 3
    assert [r["meta"]["return_stage_3"] is not None for r in results(trial)] == [True, True]
    report = (tmp_path / "v" / "report" / "report.md").read_text()
    assert "| wheeled | tesp-k3 |" in report  # the Evaluation table's row


@pytest.mark.ray
@pytest.mark.slow
def test_stopping_a_study_stops_it_without_evaluating_and_says_how_to_resume(tmp_path):
    # The laptop scale's 40 iterations leave ample time to stop the trial after its first.
    cmd = [
        sys.executable, str(REPO / "main_study.py"), "tesp_paper", "--scale", "laptop", "--seeds", "0",
        "--algs", "maml", "--envs", "wheeled", "--storage-path", str(tmp_path), "--name", "stop",
    ]  # fmt: skip
    existing = pids()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "iter    1 |" in line:
                proc.send_signal(signal.SIGINT)  # what Ctrl+C does to the driver
                break
        lines += proc.stdout.readlines()
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_orphaned_ray(existing)
    out = "".join(lines)
    assert code == 130, out[-2000:]
    assert "[study] evaluated" not in out and not (tmp_path / "stop" / "report").exists()
    assert f"resume with: python main_study.py tesp_paper --scale laptop --resume {tmp_path / 'stop'}" in out
    (trial,) = trial_dirs(tmp_path / "stop")
    assert 1 <= len(results(trial)) < 40


@pytest.mark.parametrize(
    ("content", "expected"),
    [("[1, 2", "is not valid YAML"), ('{"study": 5}', "study.json is malformed"), ("\x00\x01", "binary")],
)
def test_resume_of_a_malformed_study_record_gives_one_line(tmp_path, capsys, content, expected):
    from tesp.commands.study import main

    (tmp_path / "study.json").write_text(content)
    with pytest.raises(SystemExit) as exc:
        main(["--resume", str(tmp_path)])
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], lines


def test_pair_settings_give_each_method_and_env_its_own_budget():
    # context_vs_gradient: equal env-step budgets need per-(method, env) iterations and sampling
    from tesp.commands.study import build_plan, make_parser

    plan = build_plan(
        make_parser().parse_args(["context_vs_gradient", "--scale", "laptop", "--storage-path", "/tmp"])
    )
    by_pair = {(n, t.env): t for n, t in zip(plan.names, plan.trials, strict=True)}
    assert by_pair[("RL2", "point")].run["stop_iters"] == 300
    assert by_pair[("RL2", "half_cheetah_vel")].run["stop_iters"] == 250
    maml_point, maml_cheetah = by_pair[("MAML", "point")], by_pair[("MAML", "half_cheetah_vel")]
    assert (
        maml_point.run["stop_iters"] == 15 and maml_point.config.meta_batch_size == 20
    )  # the shipped config's
    assert maml_cheetah.run["stop_iters"] == 100 and maml_cheetah.config.meta_batch_size == 10
    assert maml_cheetah.config.max_kl == 0.01  # the optimisation stays the shipped one
    assert all(
        t.config.env_config.get("pool_size") == 40 for (_, env), t in by_pair.items() if env == "point"
    )
