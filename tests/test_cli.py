"""Bad input: one line naming the problem and the valid choices, exit code 2, no traceback."""

import sys

import pytest

from tesp.commands.train import main

from .conftest import REPO
from .runner import run_main_train


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--env", "nope", "--alg", "maml"], ["'nope'", "point"]),
        (["--env", "point", "--alg", "mamal"], ["'mamal'", "maml", "meta_sgd"]),
        (["--env", "point", "--alg", "maml", "--set", "inner_lrr=0.1"], ["'inner_lrr'", "inner_lr"]),
        (["--env", "point", "--alg", "maml", "--set", "inner_lr=fast"], ["inner_lr='fast'", "float"]),
        (
            ["--env", "point", "--alg", "maml", "--set", "env_config.horizn=5"],
            ["env_config.horizn", "env_config.horizon"],
        ),
        (["--env", "point", "--alg", "maml", "--set", "model.hidden=64"], ["model.hidden=64", "list"]),
        (
            ["--env", "point", "--alg", "maml", "--set", "outer_optimizer=adam"],
            ["outer_optimizer='adam'", "ppo", "trpo"],
        ),
        (["--env", "point", "--alg", "maml", "--set", "meta_batch_size=0"], ["meta_batch_size=0", ">= 1"]),
        (
            ["--env", "point", "--alg", "meta_sgd", "--set", "learn_step_sizes=false"],
            ["learn_step_sizes", "maml"],
        ),
        (["--env", "point", "--alg", "maml", "--set", "seed={grid_search: [1, 2.5]}"], ["seed=2.5", "int"]),
        (["--env", "point", "--alg", "maml", "--config", "/no/such.yaml"], ["/no/such.yaml"]),
        (
            ["--env", "point", "--alg", "maml", "--resume", "/no/such/experiment"],
            ["/no/such/experiment", "does not exist"],
        ),
        (["--env", "point", "--alg", "maml", "--address", "127.0.0.1:9"], ["127.0.0.1:9", "unreachable"]),
        (["--env", "point", "--alg", "maml", "--address", "nohost"], ["'nohost'", "HOST:PORT"]),
        (["--env", "point"], ["--alg"]),
        (["--env", "point", "--alg", "tesp", "--use-vime"], ["--use-vime", "--alg maml", "'tesp'"]),
        (
            ["--env", "point", "--alg", "maml", "--adapt-eta"],
            ["--adapt-eta is not a method", "--adapt-eta --use-vime", "--e-maml"],
        ),
        (
            ["--env", "point", "--alg", "maml", "--e-maml", "--use-vime"],
            ["--e-maml --use-vime", "choose one of"],
        ),
        (["--env", "point", "--alg", "mime", "--set", "dyn_lr=0"], ["dyn_lr=0", "> 0"]),
        (["--env", "point", "--alg", "mime", "--set", "information_gain=exact"], ["'exact'", "second_order"]),
        (["--env", "point", "--alg", "maml", "--stop-iters", "0"], ["stop_iters=0"]),
        (["--env", "point", "--alg", "maml", "--set", "run.keep_checkpoints=0"], ["keep_checkpoints=0"]),
        (
            ["--env", "point", "--alg", "maml", "--set", "adapted_params=[foo]"],
            ["adapted_params=['foo']", "maml", "['policy']"],
        ),
        (
            ["--env", "point", "--alg", "adaptsv", "--set", "adapted_params=[policy]"],
            ["adapted_params=['policy']", "latent"],
        ),
        (["--env", "point", "--alg", "maml", "--tesp-adapt-policy"], ["--tesp-adapt-policy", "'maml'"]),
        (
            [
                "--env",
                "point",
                "--alg",
                "maml",
                "--set",
                "env_config.pool_size=3",
                "--set",
                "meta_batch_size=4",
            ],
            ["meta_batch_size=4", "holds 3 tasks", "<= 3"],
        ),
        (["--env", "point", "--alg", "maml", "--set", "learner_num_threads=-1"], ["learner_num_threads=-1"]),
        (["--env", "point", "--alg", "maesn", "--set", "env_config.pool_size=0"], ["pool_size > 0", "maesn"]),
        (["--env", "point", "--alg", "tesp", "--set", "adapted_params=[latent]"], ["['latent']", "encoder"]),
        (
            ["--env", "point", "--alg", "tesp", "--set", "encoder_inputs=actions"],
            ["encoder_inputs='actions'", "'distribution', 'action'"],
        ),
        (
            ["--env", "point", "--alg", "tesp", "--set", "model.encoder_unitz=3"],
            ["'model.encoder_unitz'", "encoder_units"],
        ),
        (
            ["--env", "point", "--alg", "meta_sgd", "--set", "adapted_params=[latent]"],
            ["adapted_params=['latent']", "meta_sgd"],
        ),
        (["--env", "point", "--alg", "maml", "--set", "validation_freq=-1"], ["validation_freq=-1", ">= 0"]),
        (["--env", "wheeled", "--alg", "maml", "--set", "env_config.pool_size=-3"], ["pool_size", "-3"]),
        (["--env", "point", "--alg", "maml", "--seed", "-1"], ["seed=-1", "integer >= 0"]),
        (["--env", "point", "--alg", "maml", "--num-env-runners", "-1"], ["num_env_runners=-1", ">= 0"]),
        (["--env", "point", "--alg", "maml", "--set", "gamma=1.5"], ["gamma=1.5", "[0, 1]"]),
        (["--env", "point", "--alg", "maml", "--set", "lr=0"], ["lr=0", "> 0"]),
        (
            ["--env", "point", "--alg", "maml", "--set", "first_order_mode=exact"],
            ["first_order_mode='exact'", "fixed", "recompute"],
        ),
        (
            ["--env", "point", "--alg", "maml", "--set", "best_iterate_kl_target=-1"],
            ["best_iterate_kl_target=-1", ">= 0"],
        ),
        (
            ["--env", "point", "--alg", "mlsh", "--set", "num_envs_per_env_runner=0"],
            ["num_envs_per_env_runner=0", ">= 1"],
        ),
        (
            ["--env", "point", "--alg", "maml", "--set", "num_env_runners=64"],
            ["needs 33 CPUs", "EnvRunners 64 x 0.5", "the local Ray has", "--address"],
        ),
        (
            ["--env", "movement_bandits", "--alg", "mlsh", "--set", "num_learners=2"],
            ["num_learners=2", "0 or 1"],
        ),
        (
            ["--env", "point", "--alg", "maml", "--set", "num_learners=30"],
            ["num_learners=30", "at most meta_batch_size"],
        ),
        (
            ["--env", "point", "--alg", "maml", "--storage-path", "/etc/hostname/results"],
            ["--storage-path", "/etc/hostname/results", "not a writable folder"],
        ),
        # non-finite numbers, sizes beyond memory, files and paths that are not what they seem
        (
            ["--env", "point", "--alg", "maml", "--set", "inner_lr=.nan"],
            ["inner_lr=nan is not a finite number"],
        ),
        (["--env", "point", "--alg", "maml", "--set", "lr=.inf"], ["lr=inf is not a finite number"]),
        (
            ["--env", "point", "--alg", "maml", "--set", "meta_batch_size=100000000"],
            ["meta_batch_size=100000000", "needs about", "available here"],
        ),
        (
            ["--env", "point", "--alg", "maml", "--set", "env_config.pool_size=100000000"],
            ["env_config.pool_size=100000000", "needs about", "available here"],
        ),
        (
            ["--env", "point", "--alg", "maml", "--config", "/proc/cpuinfo"],
            ["/proc/cpuinfo", "not a regular file"],
        ),
        (["--env", "point", "--alg", "maml", "--config", sys.executable], ["not a settings file"]),
        (["--env", "point", "--alg", "maml", "--config", "/tmp"], ["'/tmp' is a folder, not a file"]),
        (
            ["--env", "point", "--alg", "maml", "--storage-path", "/proc/results"],
            ["--storage-path", "/proc/results", "system folder"],
        ),
        (["--env", "point"], ["required: --alg", "--resume"]),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in expected:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--env", "nope", "--alg", "maml"],
            "unknown --env 'nope'; choose from: ant, ant_bandits, ant_dir, half_cheetah_dir, half_cheetah_vel, ml10",
        ),
        (
            ["--env", "point", "--alg", "maml", "--address", "127.0.0.1:9"],
            "--address '127.0.0.1:9' is unreachable",
        ),
    ],
)
def test_bad_input_from_the_shell(args, expected):
    proc = run_main_train(*args, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: {expected}")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr + proc.stdout


def test_help_lists_envs_and_algorithms(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert (
        "registered envs: ant, ant_bandits, ant_dir, half_cheetah_dir, half_cheetah_vel, ml10, "
        "movement_bandits, nav_close_ring, nav_dog_feeding, "
        "nav_hard_exploration, nav_wide_ring, pendulum_dense, pendulum_sparse, point, point_robot_sparse, reacher_2_link, "
        "reacher_4_link, walker_crawl, walker_forward, walker_jump, walker_obstacle_course, wheeled" in out
    )
    assert "reacher_2-link (= reacher_2_link)" in out
    for alg in (
        "adaptsv",
        "e_maml",
        "maesn",
        "maml",
        "meta_sgd",
        "mlsh",
        "ppo",
        "primitives",
        "tesp",
        "tesp_adapt_policy",
    ):
        assert alg in out
    assert "--tesp-adapt-policy" in out and "-W N, --warmup-iters N" in out


@pytest.mark.parametrize(
    ("switches", "alg", "settings"),
    [
        (["--add-noise"], "mime", {"use_vime": False, "adapt_eta": False, "reward_noise_std": 0.1}),
        (["--use-vime"], "mime", {"use_vime": True, "adapt_eta": False, "reward_noise_std": 0.0}),
        (["--use-vime", "--adapt-eta"], "mime", {"use_vime": True, "adapt_eta": True}),
        (["--e-maml"], "e_maml", {"e_maml_coeff": 1.0}),
        ([], "maml", {}),
    ],
)
def test_mime_seed_spellings_name_the_methods(switches, alg, settings):
    from tesp.commands.train import build_plan, make_parser

    plan = build_plan(make_parser().parse_args(["--env", "point", "--alg", "maml", *switches]))
    assert plan.settings.alg == alg
    for key, value in settings.items():
        assert getattr(plan.settings.config, key) == value


def test_set_reads_exponent_numbers_as_floats():
    """PyYAML reads ``3e-5`` (no dot) as a string; ``--set lr=3e-5`` means the number."""
    from tesp.config_overrides import parse_set

    values = parse_set(["lr=3e-5", "a=1E3", "b=-2.5e-1", "name=x3e5", "n=7"])
    assert values == {"lr": 3e-5, "a": 1000.0, "b": -0.25, "name": "x3e5", "n": 7}
    assert isinstance(values["lr"], float) and isinstance(values["n"], int)


@pytest.mark.parametrize(
    ("alg", "expected"),
    [
        ("tesp", ["buffer_size = 16", "embedding_reg_coeff = 0.01", "meta_batch_size = 20"]),
        ("maml", ["meta_batch_size = 20", "num_inner_steps = 1", "inner_lr = 0.1"]),
    ],
)
def test_help_of_an_alg_lists_its_settings_with_defaults_and_docs(alg, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--alg", alg, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out, text
    assert "K, inner steps per task" in out or alg != "maml"


def test_print_config_prints_the_resolved_settings_that_config_reads_back(tmp_path, capsys):
    assert main(["--env", "wheeled", "--alg", "tesp", "--set", "buffer_size=7", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "buffer_size: 7" in text and "num_outer_steps: 19" in text  # the shipped config's
    saved = tmp_path / "run.yaml"
    saved.write_text(text)
    assert main(["--env", "wheeled", "--alg", "tesp", "--config", str(saved), "--print-config"]) == 0
    assert capsys.readouterr().out == text


def test_the_settings_reference_in_the_docs_is_generated_from_the_code():
    """docs/settings.md is what `python -m tesp.commands.settings_doc` writes now: a setting
    added, renamed, redocumented or given another default without regenerating it fails here."""
    from tesp.commands.settings_doc import REFERENCE, reference

    assert (REPO / REFERENCE).read_text() == reference(), "stale: run python -m tesp.commands.settings_doc"
