"""Segmenter trial: the fold's CT U-Net trained as the workflow trains it, Dice per structure on real CT.

Usage: python benchmarks/segmenter_trial.py --workdir WORKDIR [--fold 0] [--set key=value ...] --out DIR
       [--synthetic RUN_DIR ...] [--segmenter MODEL_PT]

WORKDIR holds a preprocessed default run (``snakemake --until preprocess splits``). Trains
``mr2ct.segmentation.segmenter.train_segmentation`` on the real CT of the fold's training pool (the
``segmentation:`` settings of config.yaml with ``--set`` overrides), then segments the fold's
test subjects at training resolution and prints one JSON line: the mean Dice per structure on
real CT and, with ``--synthetic`` (a workflow's ``results/synthetic_ct/<size>/<model>/fold<k>/rep<r>``
folder, or a convergence trial's output folder holding ``generator.pt``), on that model's
synthetic CT of the same subjects. ``--segmenter`` scores with a segmenter trained before
(a ``model.pt`` of this script or of the workflow) instead of training one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from mr2ct.config import load_config
from mr2ct.data.phantom import LABELS, subject_ids
from mr2ct.data.preprocess import load_preprocessed, normalise_ct
from mr2ct.data.splits import splits_from_config
from mr2ct.models.synthesis import load_generator, predict_ct
from mr2ct.segmentation.segmenter import SegmentationSettings, load_segmenter, predict_labels, train_segmentation

ROOT = Path(__file__).resolve().parents[1]


def dice_per_structure(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    out = {}
    for label, name in LABELS.items():
        p, r = prediction == label, reference == label
        total = int(p.sum()) + int(r.sum())
        out[name] = 2.0 * int((p & r).sum()) / total if total else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="segmentation.* overrides, e.g. steps=2000")
    parser.add_argument("--synthetic", nargs="*", type=Path, default=[], help="run folders holding generator.pt")
    parser.add_argument("--segmenter", type=Path, help="a trained model.pt to score with (no training)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(ROOT / "config.yaml")
    for item in args.set:
        key, value = item.split("=", 1)
        current = config["segmentation"][key]
        config["segmentation"][key] = (value == "true") if isinstance(current, bool) else type(current)(value)
    fold = splits_from_config(subject_ids(config["data"]["phantom"]["subjects"]), config)[args.fold]
    pre = args.workdir / "results" / "preprocessed"
    settings = SegmentationSettings.from_config(config, args.fold, max(LABELS) + 1)
    start = time.perf_counter()
    model_path = args.segmenter or train_segmentation(
        settings,
        [pre / f"{s}.npz" for s in fold.pool],
        [pre / f"{s}.npz" for s in fold.validation],
        args.out,
        progress=False,
    )
    seconds = time.perf_counter() - start
    model = load_segmenter(model_path)
    sources = {"real_ct": None, **{str(p): load_generator(p / "generator.pt") for p in args.synthetic}}
    result = {
        "fold": args.fold,
        "set": args.set,
        "seconds": round(seconds, 1),
        "settings": dataclasses.asdict(settings),
    }
    for source, generator in sources.items():
        scores = []
        for subject in fold.test:
            cache = load_preprocessed(pre / f"{subject}.npz")
            ct = cache.ct if generator is None else predict_ct(generator, cache.mr)
            if generator is not None:  # the synthetic CT through the same HU map as the real one
                ct = normalise_ct(cache.ct_hu(ct), cache.ct_hu_points, cache.ct_norm_points)
            scores.append(dice_per_structure(predict_labels(model, ct), cache.labels))
        per_structure = {name: round(float(np.nanmean([s[name] for s in scores])), 3) for name in LABELS.values()}
        result[source] = {"mean": round(float(np.nanmean(list(per_structure.values()))), 3), **per_structure}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
