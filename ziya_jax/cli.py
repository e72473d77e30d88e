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
    args = parser.parse_args(rest)
    if not getattr(args, "run", None):
        parser.print_help()
        sys.exit(1)
    from tools.convert.common import fail, quiet_absl

    quiet_absl()
    try:
        code = args.run(args, overrides)
    except (ConfigError, CheckpointError, FileExistsError, ValueError) as e:
        if os.environ.get("ZIYA_DEBUG"):
            raise
        fail(str(e))
    sys.exit(code or 0)
