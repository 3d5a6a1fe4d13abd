"""Pack a pretrained encoder for the trip back from the device machine, and unpack it here.

The device tool brings back at most 8 files of at most 16 MiB each. ``pack`` writes the
encoder's weights in fp16 (half the bytes; the weights are stored, not computed, in fp16:
loading upcasts them) with its vocabulary, config and model card into one tar, split into
parts of 15 MB, and a SHA256SUMS that ``unpack`` checks before anything is used.

    python bench/gpu/pack_result.py pack runs/small-zh-gpu/model $OUT
    python bench/gpu/pack_result.py unpack /work/.device/.../files runs/tunewise-small-zh
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
from pathlib import Path

PART_BYTES = 15_000_000
NAME = "encoder.tar"
# what loading the encoder reads, and its card; checkpoints and logs stay behind
KEEP = (
    "config.json",
    "model.safetensors",
    "vocab.txt",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "pretraining.json",
    "README.md",
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fp16_weights(path: Path) -> bytes:
    import torch
    from safetensors.torch import load_file, save

    tensors = load_file(str(path))
    return save(
        {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()},
        metadata={"format": "pt"},
    )


def pack(model_dir: Path, dest: Path) -> list[Path]:
    """Write ``encoder.tar.part-NN`` files and ``SHA256SUMS`` into ``dest``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in KEEP:
            path = model_dir / name
            if not path.is_file():
                continue
            data = _fp16_weights(path) if name == "model.safetensors" else path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    whole = buffer.getvalue()
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(0, len(whole), PART_BYTES):
        part = dest / f"{NAME}.part-{i // PART_BYTES:02d}"
        part.write_bytes(whole[i : i + PART_BYTES])
        parts.append(part)
    sums = [f"{_sha256(p.read_bytes())}  {p.name}" for p in parts] + [f"{_sha256(whole)}  {NAME}"]
    (dest / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
    print(f"packed {model_dir} into {len(parts)} part(s) of at most {PART_BYTES:,} bytes in {dest}")
    return parts


def unpack(source: Path, target: Path) -> Path:
    """Check every part and the whole against SHA256SUMS, then extract into ``target``."""
    expected = dict(
        reversed(line.split("  ", 1)) for line in (source / "SHA256SUMS").read_text().splitlines() if line
    )
    parts = sorted(source.glob(f"{NAME}.part-*"))
    for part in parts:
        if _sha256(part.read_bytes()) != expected.get(part.name):
            raise SystemExit(f"{part}: SHA-256 differs from SHA256SUMS; the transfer is damaged")
    whole = b"".join(p.read_bytes() for p in parts)
    if _sha256(whole) != expected.get(NAME):
        raise SystemExit(f"{source}: the joined parts differ from the packed tar (a part is missing?)")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(whole), mode="r") as tar:
        tar.extractall(target, filter="data")  # plain files only, nothing outside target
    print(f"unpacked {len(parts)} part(s) into {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["pack", "unpack"])
    ap.add_argument("source", type=Path)
    ap.add_argument("target", type=Path)
    args = ap.parse_args(argv)
    (pack if args.action == "pack" else unpack)(args.source, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
