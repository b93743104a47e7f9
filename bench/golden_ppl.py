#!/usr/bin/env python3
"""Every perplexity in ../shared/models/*/golden.json (all contexts, not only the ctx-128 ones
the tests run), recomputed with `qforge eval --json` and compared with the PyTorch reference.
Usage: bench/golden_ppl.py [--threads 2] [--only qf-27m]"""
import argparse, json, os, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.environ.get("QFORGE_SHARED", os.path.join(root, "..", "shared"))
texts = {"wikitext2-test": "data/wikitext-2-raw/wiki.test.raw",
         "tinystories-val-head": "data/tinystories/tinystories_val_head.txt",
         "heldout": "data/qf-heldout.txt"}
models = {"stories260K": os.path.join(root, "models/stories260K/hf"),
          "qf-27m": os.path.join(shared, "models/qf-27m")}
ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--only")
args = ap.parse_args()
worst = 0.0
for name, path in models.items():
    if args.only and name != args.only:
        continue
    golden_dir = os.path.dirname(path) if name == "stories260K" else path
    golden = json.load(open(os.path.join(golden_dir, "golden.json")))["ppl"]
    for key, ref in golden.items():
        text, ctx = key.split("@")
        out = subprocess.run([os.path.join(root, "build/qforge"), "-t", str(args.threads), "eval", path,
                              "--text", os.path.join(shared, texts[text]), "--ctx", ctx, "--json"],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        rel = abs(r["ppl"] - ref["ppl"]) / ref["ppl"]
        worst = max(worst, rel)
        ok = rel <= 1e-4 and r["windows"] == ref["windows"] and r["scored"] == ref["scored"]
        print(f"{name:<12} {key:<28} qforge {r['ppl']:.6f}  golden {ref['ppl']:.6f}  rel {rel:.1e}  "
              f"{r['tokens_per_second']:.0f} tok/s  {'ok' if ok else 'MISMATCH'}", flush=True)
print(f"worst relative difference: {worst:.2e}")
sys.exit(0 if worst <= 1e-4 else 1)
