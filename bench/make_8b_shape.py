#!/usr/bin/env python3
"""Writes a random-weight checkpoint of Llama-3-8B's exact shape for bench/gpu_scale.sh.

32 layers, hidden 4096, MLP 14336, 32 query / 8 KV heads of 128, vocab 128,256, untied head;
bf16 safetensors in shards of 4 layers with model.safetensors.index.json, and the real Llama 3
tokenizer. The weights are N(0, 0.02²) (norms 1): meaningless — only time and memory are
measured. Drawn on the GPU when there is one (seconds), else on the CPU.
Usage: make_8b_shape.py OUT_DIR TOKENIZER_DIR
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

H, FF, NH, NKV, HD, V = 4096, 14336, 32, 8, 128, 128256
L = int(os.environ.get("LAYERS", "32"))  # fewer for a quick profile


def main(out, tok):
    os.makedirs(out)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=dev).manual_seed(0)

    def rnd(*shape):
        return (torch.randn(*shape, generator=gen, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()

    def ones(n):
        return torch.ones(n, dtype=torch.bfloat16)

    shards, index = [], {}
    shards.append({"model.embed_tokens.weight": rnd(V, H), "model.norm.weight": ones(H), "lm_head.weight": rnd(V, H)})
    for l0 in range(0, L, 4):
        t = {}
        for l in range(l0, l0 + 4):
            p = f"model.layers.{l}."
            t[p + "self_attn.q_proj.weight"] = rnd(NH * HD, H)
            t[p + "self_attn.k_proj.weight"] = rnd(NKV * HD, H)
            t[p + "self_attn.v_proj.weight"] = rnd(NKV * HD, H)
            t[p + "self_attn.o_proj.weight"] = rnd(H, NH * HD)
            t[p + "mlp.gate_proj.weight"] = rnd(FF, H)
            t[p + "mlp.up_proj.weight"] = rnd(FF, H)
            t[p + "mlp.down_proj.weight"] = rnd(H, FF)
            t[p + "input_layernorm.weight"] = ones(H)
            t[p + "post_attention_layernorm.weight"] = ones(H)
        shards.append(t)
    total = 0
    for i, t in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(t, os.path.join(out, name), metadata={"format": "pt"})
        for k, v in t.items():
            index[k] = name
            total += v.numel() * 2
    json.dump({"metadata": {"total_size": total}, "weight_map": index}, open(os.path.join(out, "model.safetensors.index.json"), "w"))
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=H, intermediate_size=FF,
               num_hidden_layers=L, num_attention_heads=NH, num_key_value_heads=NKV, head_dim=HD, vocab_size=V,
               max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
               bos_token_id=128000, eos_token_id=128001, hidden_act="silu", torch_dtype="bfloat16",
               attention_bias=False, mlp_bias=False)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok, f), out)
    print(f"wrote {out}: {total / 2**30:.2f} GiB of bf16 weights in {len(shards)} shards")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
