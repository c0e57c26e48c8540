"""``main_study.py STUDY``: a whole comparison from one command: train, evaluate, report.

A study (``configs/studies/<STUDY>.yaml``) names the methods, the envs, the seeds, the noise
levels of the evaluation, optional extra trials (``noise_sweep``: TESP on the ant in the TESP
paper's study), optional ``variants`` (a method with settings of its own, trained and reported
under the variant's name, e.g. ``tesp-k3: {alg: tesp, settings: {num_inner_steps: 3}}``) and its
scales (settings over the shipped ``configs/<env>/<alg>.yaml``, per method in
``method_settings``, per env in ``env_settings``, per method and env in ``pair_settings``
(``{alg: {env: {...}}}``: e.g. equal env-step budgets for methods that sample differently), e.g.
``run.stop_iters``; ``scales_from: OTHER`` takes another study's). The command then

1. trains every (method, env, seed) as **one Tune experiment** (one ``tune.Experiment`` per
   (method, env), the seeds a grid, all under one experiment folder, so Tune runs the trials side
   by side on whatever CPUs the local Ray or the cluster has; ``--resume`` continues it);
2. evaluates every checkpoint of every trial as ``main_test.py`` does (with the study's
   ``eval_inner_steps`` where it sets them, e.g. MIME's protocol of 10), on D, D', D'' at each of
   the study's noise levels (as Ray tasks of one CPU each, side by side; a checkpoint already
   evaluated is skipped, so a resumed study only evaluates what is new);
3. writes the report (``main_report.py``) of the experiment folder into ``--out``, with a table
   of each method's difference from the study's ``reference`` method where it names one.

Bad input (study, scale, seeds, methods, envs, paths, a study that cannot fit the local Ray) ends
the program with one ``error:`` line and exit code 2 before Ray starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tesp.commands.ray_connection import check_fits_locally, connect_ray
from tesp.config_overrides import load_yaml, read_mapping
from tesp.errors import ConfigError, OneLineParser, check_writable, fail
from tesp.settings import CONFIG_DIR, Settings, check, resolve

STUDY_DIR = CONFIG_DIR / "studies"
STUDY_FILE = "study.json"  # the command's choices, in the experiment folder (for --resume)
RECORDED = ("study", "scale", "iters", "seeds", "algs", "envs", "no_noise_sweep")


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="main_study.py",
        description="Train, evaluate and report a whole comparison of methods (configs/studies/STUDY.yaml).",
    )
    parser.add_argument(
        "study", nargs="?", help=f"a study in {STUDY_DIR.relative_to(CONFIG_DIR.parent)}/ (e.g. tesp_paper)"
    )
    parser.add_argument("--scale", default="laptop", help="one of the study's scales (default laptop)")
    parser.add_argument("--iters", default=None, help="meta-iterations of every trial (default: the scale's)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the study's)")
    parser.add_argument("--algs", default=None, help="comma-separated methods (default: the study's)")
    parser.add_argument(
        "--envs",
        default=None,
        help="comma-separated envs (default: the study's; naming only the noise sweep's runs it alone)",
    )
    parser.add_argument(
        "--no-noise-sweep", action="store_true", help="leave out the study's noise_sweep trials"
    )
    parser.add_argument(
        "--storage-path", default=None, help="where Tune writes results (default ~/ray_results)"
    )
    parser.add_argument("--name", default=None, help="experiment name (default STUDY-SCALE-TIMESTAMP)")
    parser.add_argument(
        "--resume", default=None, metavar="PATH", help="continue the study in this experiment folder"
    )
    parser.add_argument("--out", default=None, help="report folder (default: EXPERIMENT/report)")
    parser.add_argument("--address", default=None, help="join a running Ray cluster: 'auto' or HOST:PORT")
    parser.add_argument(
        "--verbose", action="store_true", help="show Ray's and Tune's own log lines (hidden by default)"
    )
    return parser


@dataclass
class StudyPlan:
    name: str
    scale: str
    storage: str
    experiment: str  # name of the Tune experiment (folder under storage)
    trials: list[Settings]  # one per (method or variant, env), the seeds a grid
    names: list[str]  # each trial's Tune trainable name: the method's Algorithm class or the variant
    sigmas: list[float]  # noise levels of each trial's final checkpoint
    intermediate_sigmas: list[float]  # and of its earlier checkpoints
    eval_pool_size: int
    out: Path
    resume: bool
    recorded: dict[str, Any]  # written to STUDY_FILE
    eval_inner_steps: int | None = None  # inner steps of the evaluation (None: each checkpoint's own)
    reference: str | None = None  # the report's method the others are compared with


def load_study(name: str) -> dict[str, Any]:
    path = STUDY_DIR / f"{name}.yaml"
    if not name.replace("_", "").replace("-", "").isalnum() or not path.is_file():
        known = sorted(p.stem for p in STUDY_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown study {name!r}; choose from: {', '.join(known)}")
    study = load_yaml(path.read_text())
    if "scales_from" in study:
        study["scales"] = load_study(study["scales_from"])["scales"]
    study.setdefault("algs", [])
    study.setdefault("variants", {})
    from tesp.registry import ALGS

    for variant, spec in study["variants"].items():
        if "_" in variant or variant in ALGS or spec.get("alg") not in ALGS:
            raise ConfigError(
                f"study {name!r}: variant {variant!r} needs a name without '_' that is not a method, "
                f"and an alg from: {', '.join(sorted(ALGS))}"
            )
    return study


def _names(text: str | None, default: list, flag: str, valid: list[str] | None = None) -> list:
    if text is None:
        return list(default)
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ConfigError(f"{flag} {text!r} names nothing")
    if valid is not None:
        bad = [s for s in items if s not in valid]
        if bad:
            raise ConfigError(f"{flag}: {bad[0]!r} is not in this study; choose from: {', '.join(valid)}")
    return items


def build_plan(args: argparse.Namespace) -> StudyPlan:
    """Resolve and check every trial's settings; raises ConfigError. No Ray needed.

    With ``--resume``, the study, scale, seeds, methods and envs are the ones the folder's
    ``study.json`` recorded when the study started."""
    if args.resume is not None:
        vars(args).update(_recorded_choices(args.resume))
    if args.study is None:
        known = sorted(p.stem for p in STUDY_DIR.glob("*.yaml"))
        raise ConfigError(f"name a study (choose from: {', '.join(known)}) or --resume a study's folder")
    study = load_study(args.study)
    scales = study["scales"]
    if args.scale not in scales:
        raise ConfigError(f"unknown --scale {args.scale!r}; choose from: {', '.join(scales)}")
    scale = scales[args.scale]
    seeds = _seeds(args.seeds, study["seeds"])
    if args.iters is not None and not (args.iters.strip().isdigit() and int(args.iters) >= 1):
        raise ConfigError(f"--iters {args.iters!r} must be an integer >= 1")
    # --iters: every trial's length, over the scale's and its env settings'
    iters = {} if args.iters is None else {"run.stop_iters": int(args.iters)}
    algs = _names(
        args.algs, study["algs"] + list(study["variants"]), "--algs", study["algs"] + list(study["variants"])
    )
    pairs = _pairs(args, study, algs)
    trials, names = [], []
    for name, env in pairs:
        settings, label = _trial(study, scale, name, env, iters | {"seed": {"grid_search": seeds}})
        check(settings)
        if args.address is None:
            check_fits_locally(settings)
        trials.append(settings)
        names.append(label)
    # What --resume repeats: the choices as resolved now, so that a study file edited later (e.g.
    # an env added) does not change what a resumed experiment trains.
    recorded = {k: getattr(args, k) for k in RECORDED} | {
        "seeds": ",".join(map(str, seeds)),
        "algs": ",".join(algs),
        "envs": ",".join(dict.fromkeys(env for _, env in pairs)),
    }
    storage = os.path.abspath(os.path.expanduser(args.storage_path or "~/ray_results"))
    if args.resume is not None:
        path = Path(os.path.expanduser(args.resume)).resolve()
        if not (path.is_dir() and list(path.glob("experiment_state-*.json"))):
            raise ConfigError(f"--resume {args.resume!r}: no Tune experiment there (expected STORAGE/NAME)")
        storage, experiment = str(path.parent), path.name
    else:
        experiment = args.name or f"{args.study}-{args.scale}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_writable(storage, "--storage-path")
    out = Path(os.path.expanduser(args.out)) if args.out else Path(storage) / experiment / "report"
    sigmas = [float(s) for s in study.get("sigmas", [0.0])]
    intermediate = [float(s) for s in study.get("intermediate_sigmas", sigmas)]
    return StudyPlan(
        args.study, args.scale, storage, experiment, trials, names, sigmas, intermediate,
        int(scale.get("eval_pool_size", 0)), out,
        args.resume is not None, recorded,
        int(study["eval_inner_steps"]) if "eval_inner_steps" in study else None,
        study.get("reference") if study.get("reference") in algs else None,
    )  # fmt: skip


def _recorded_choices(resume: str) -> dict:
    """The choices ``study.json`` recorded in the study folder ``resume``."""
    saved = Path(os.path.expanduser(resume)) / STUDY_FILE
    if not saved.exists():
        raise ConfigError(f"--resume {resume!r}: no study there (expected {STUDY_FILE} in it)")
    recorded = read_mapping(saved, "study record")
    bad = sorted(set(recorded) - set(RECORDED))
    if bad or not all(isinstance(v, str | bool | None) for v in recorded.values()):
        raise ConfigError(f"--resume {resume!r}: {STUDY_FILE} is malformed (keys {sorted(recorded)})")
    return recorded


def _seeds(given: str | None, default) -> list[int]:
    try:
        seeds = [int(s) for s in _names(given, default, "--seeds")]
    except ValueError:
        raise ConfigError(f"--seeds {given!r} must be comma-separated integers >= 0") from None
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {given!r} must be comma-separated integers >= 0")
    return seeds


def _pairs(args: argparse.Namespace, study: dict, algs: list[str]) -> list[tuple[str, str]]:
    """The (method, env) pairs to train. ``--envs`` picks from the study's envs and the noise
    sweep's (naming only the latter runs the sweep alone); the sweep runs unless
    ``--no-noise-sweep`` or an ``--envs`` that leaves its env out."""
    sweep = study.get("noise_sweep")
    valid_envs = study["envs"] + ([sweep["env"]] if sweep and sweep["env"] not in study["envs"] else [])
    envs = _names(args.envs, study["envs"], "--envs", valid_envs)
    pairs = [(alg, env) for env in envs if env in study["envs"] for alg in algs]
    if sweep and not args.no_noise_sweep and (args.envs is None or sweep["env"] in envs):
        pairs += [(alg, sweep["env"]) for alg in sweep["algs"] if alg in algs]
    if not pairs:
        swept = f"; its noise sweep: {', '.join(sweep['algs'])} on {sweep['env']}" if sweep else ""
        choices = study["algs"] + list(study["variants"])
        raise ConfigError(
            f"--algs {args.algs!r} and --envs {args.envs!r} leave no trial in this study "
            f"(its methods: {', '.join(choices)}; its envs: {', '.join(study['envs'])}{swept})"
        )
    return pairs


def _trial(study: dict, scale: dict, name: str, env: str, last: dict):
    """One (method or variant, env) pair's resolved settings and its label in the report; the
    settings by precedence: the scale's, its method's, the variant's, its run's, its env's, its
    (method, env) pair's, then ``last`` (--iters, the seeds)."""
    variants = study["variants"]
    alg = variants[name]["alg"] if name in variants else name
    overrides = {
        **scale.get("settings", {}),
        **scale.get("method_settings", {}).get(alg, {}),
        **(variants[name].get("settings", {}) if name in variants else {}),
        **{f"run.{k}": v for k, v in scale.get("run", {}).items()},
        **scale.get("env_settings", {}).get(env, {}),
        **scale.get("pair_settings", {}).get(alg, {}).get(env, {}),
        "run.keep_checkpoints": None,  # every checkpoint is evaluated
        **last,
    }
    settings = resolve(alg, env, overrides)
    return settings, (name if name in variants else settings.method.algo_class.__name__)


def train(plan: StudyPlan) -> tuple[list[str], list[str]]:
    """Every trial of the study as one Tune experiment (resumed when ``plan.resume``); returns
    the folders of the trials that failed and of those left unfinished (the run was stopped)."""
    from ray import tune

    from tesp.commands.progress import CsvLogger, JsonLogger, Progress, TensorBoardLogger
    from tesp.registry import METHODS

    runs = []
    for name, s in zip(plan.names, plan.trials, strict=True):
        if name != s.method.algo_class.__name__:  # a variant: its trials and report carry its name
            tune.register_trainable(name, s.method.algo_class)
            runs.append(name)
        else:
            runs.append(s.method.algo_class)
    experiments = [
        tune.Experiment(
            name=plan.experiment,
            run=run,
            config=s.config.to_dict(),
            stop={"training_iteration": s.run["stop_iters"]},
            storage_path=plan.storage,
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=s.run["checkpoint_freq"], checkpoint_at_end=True
            ),
        )
        for run, s in zip(runs, plan.trials, strict=True)
    ]
    summary = METHODS[plan.trials[0].alg].summary  # the study's methods share the meta-learners' line
    analysis = tune.run(
        experiments,
        # A resumed study continues its unfinished trials and those that failed (a crash or a
        # killed Ray ends trials as failed), each from its last checkpoint.
        resume="AUTO+ERRORED" if plan.resume else None,
        verbose=0,
        callbacks=[Progress(summary, by_config=True), JsonLogger(), CsvLogger(), TensorBoardLogger()],
        raise_on_failed_trial=False,
    )
    failed = [t.path for t in analysis.trials if t.status == "ERROR"]
    # Tune marks the trials of a stopped (SIGINT) run TERMINATED too: compare with their stop.
    unfinished = [
        t.path
        for t in analysis.trials
        if t.status != "ERROR"
        and t.last_result.get("training_iteration", 0) < t.stopping_criterion["training_iteration"]
    ]
    return failed, unfinished


def _evaluate_one(
    checkpoint: str, sigmas: list[float], pool_size: int, inner_steps: int | None = None
) -> str:
    """Evaluate one checkpoint as ``main_test.py`` does (a Ray task); returns the JSON path."""
    import ray.tune.trainable.trainable as trainable
    from ray.rllib.algorithms.algorithm import Algorithm

    from tesp.commands.evaluate import FRESH, evaluate, metadata, write
    from tesp.envs import register_envs

    scratch = tempfile.mkdtemp(prefix="tesp-eval-")
    trainable.DEFAULT_STORAGE_PATH = scratch
    try:
        register_envs()
        algo = Algorithm.from_checkpoint(checkpoint)
        try:
            pools = list(algo.task_env.task_pools()) or [FRESH]
            rows, summary, paths = evaluate(
                algo, pools, sigmas, pool_size, progress=False, inner_steps=inner_steps
            )
            meta = metadata(algo, Path(checkpoint), pools, task_seed=0)
            if inner_steps is not None:
                meta["num_inner_steps"] = inner_steps
        finally:
            algo.stop()
        _, json_path = write(Path(checkpoint), rows, summary, meta, paths)
        return str(json_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def evaluate_all(plan: StudyPlan) -> list[str]:
    """Every checkpoint of the experiment not evaluated yet, one Ray task (1 CPU) each: a trial's
    final checkpoint at ``plan.sigmas``, its earlier ones at ``plan.intermediate_sigmas``. Returns
    the checkpoints whose evaluation failed."""
    import ray

    root = Path(plan.storage) / plan.experiment
    todo = []  # (checkpoint, sigmas)
    for trial in sorted(p for p in root.iterdir() if p.is_dir()):
        checkpoints = sorted(c for c in trial.glob("checkpoint_*") if c.is_dir())
        for c in checkpoints:
            if not (trial / f"{c.name}-eval.json").exists():
                todo.append((str(c), plan.sigmas if c == checkpoints[-1] else plan.intermediate_sigmas))
    task = ray.remote(num_cpus=1)(_evaluate_one)
    refs = [task.remote(c, sigmas, plan.eval_pool_size, plan.eval_inner_steps) for c, sigmas in todo]
    failed = []
    for i, ((checkpoint, _), ref) in enumerate(zip(todo, refs, strict=True), 1):
        try:
            print(f"[study] evaluated {i}/{len(refs)}: {ray.get(ref)}", flush=True)
        except Exception as e:  # noqa: BLE001 (one bad checkpoint must not lose the others)
            failed.append(checkpoint)
            print(
                f"[study] evaluation FAILED {i}/{len(refs)}: {checkpoint}: {str(e).splitlines()[0]}",
                flush=True,
            )
    return failed


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = make_parser().parse_args(argv)
    try:
        plan = build_plan(args)
        connect_ray(args.address, dashboard=False)
    except ConfigError as e:
        fail(str(e))
    import ray

    from tesp.commands.report import main as report_main
    from tesp.envs import register_envs

    try:
        register_envs()
        root = Path(plan.storage) / plan.experiment
        print(
            f"[study] {plan.name} at scale {plan.scale}: {len(plan.trials)} (method, env) pairs -> {root}",
            flush=True,
        )
        if not plan.resume:
            root.mkdir(parents=True, exist_ok=True)
            (root / STUDY_FILE).write_text(json.dumps(plan.recorded, indent=2))
        failed, unfinished = train(plan)
        if not unfinished:
            failed += evaluate_all(plan)
    finally:
        ray.shutdown()
    resume = f"python main_study.py {plan.name} --scale {plan.scale} --resume {root}"
    if unfinished:  # stopped (Ctrl+C): evaluating and reporting now would only delay the stop
        print(f"[study] stopped with {len(unfinished)} trial(s) unfinished; resume with: {resume}")
        return 130
    reference = ["--reference", plan.reference] if plan.reference else []
    code = report_main(
        [str(root), "--out", str(plan.out), "--title", f"{plan.name} ({plan.scale} scale)", *reference]
    )
    for path in failed:  # the study goes on without them; the report covers the others
        print(f"[study] FAILED (a trial: see its error.txt; a checkpoint: its evaluation above): {path}")
    print(f"[study] report: {plan.out / 'report.md'}\n[study] resume with: {resume}")
    return code or (1 if failed else 0)
