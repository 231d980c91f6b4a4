#!/usr/bin/env python3
"""Seeded generator of a synthetic 1B-class llama, the benchmark model of issues 9 and 10.

The shape of Llama 3.2 1B: 16 layers, width 2048, FFN 8192, 32 query heads / 8 KV heads of 64, rope base 500000
with Llama 3 frequency factors (`rope_freqs.weight`), a 128256-token vocabulary, the embedding tied to the output.
Weights are random (seeded normal, scaled so each matmul keeps an rms-1 stream), written as F16 (norms F32); the
caller then quantizes it to the Q4_K_M mix (Q4_K, Q6_K for attn_v / half of ffn_down and the tied embedding), ~0.8
GB: `hearth quantize --type q4_k_m` (what `./build.sh synth-1b` runs: no llama.cpp needed), or llama.cpp's
`llama-quantize <f16> <out> Q4_K_M` (the same types for every tensor; other values). Nothing here is meant to be a good model: it is
a benchmark of the kernels at a real model's shapes.

Tokenizer: the default model's gpt2-style BPE (SmolLM2-135M-Instruct: 49152 tokens with their merges), padded
with unused tokens `<|synthetic_N|>` (type UNUSED) to 128256 ids, so both hearth and llama.cpp tokenize real text.

  python3 tools/reference/gen_synth.py --out models/synth-1b.f16.gguf [--smollm models/SmolLM2-135M-Instruct.Q4_1.gguf]
Needs gguf==0.19.0 and numpy==2.4.6 (as gen_tiny.py). `./build.sh synth-1b` runs it and the quantization.
"""
import argparse
import os
import sys
import zlib

import numpy as np
import gguf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_tiny import check_versions, llama3_rope_factors, read_metadata  # noqa: E402

N_LAYER, N_EMBD, N_FF, N_HEAD, N_HEAD_KV, HEAD_DIM, N_VOCAB = 16, 2048, 8192, 32, 8, 64, 128256
ROPE_BASE = 500000.0


def rng(name):
    return np.random.default_rng([zlib.crc32(b"synth-1b"), zlib.crc32(name.encode())])


def normal_f16(name, shape, std):
    """Seeded N(0, std²) as f16, generated in row chunks (the 128256×2048 embedding is 262M values)."""
    g = rng(name)
    out = np.empty(shape, dtype=np.float16)
    step = max(1, (1 << 24) // shape[-1])
    for r in range(0, shape[0], step):
        out[r:r + step] = (g.standard_normal((min(step, shape[0] - r), shape[-1]), dtype=np.float32) * std)
    return out


def uniform_f32(name, n, lo=0.8, hi=1.2):
    return rng(name).uniform(lo, hi, n).astype(np.float32)


def add_vocab(w, src):
    m = read_metadata(src)
    tokens = list(m["tokenizer.ggml.tokens"])
    types = m["tokenizer.ggml.token_type"].astype(np.int32).tolist()
    pad = N_VOCAB - len(tokens)
    assert pad >= 0
    tokens += [f"<|synthetic_{i}|>" for i in range(pad)]
    types += [int(gguf.TokenType.UNUSED)] * pad
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(m["tokenizer.ggml.merges"])
    w.add_bos_token_id(int(m["tokenizer.ggml.bos_token_id"]))
    w.add_eos_token_id(int(m["tokenizer.ggml.eos_token_id"]))
    w.add_add_bos_token(False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/synth-1b.f16.gguf")
    ap.add_argument("--smollm", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    args = ap.parse_args()
    check_versions()
    part = args.out + ".partial"
    w = gguf.GGUFWriter(part, "llama")
    w.add_name("hearth synth 1B (Llama 3.2 1B shape, random weights)")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(131072)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(ROPE_BASE)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_vocab_size(N_VOCAB)
    add_vocab(w, args.smollm)

    def mat(name, n_out, n_in, gain=1.0):
        w.add_tensor(name, normal_f16(name, (n_out, n_in), gain / np.sqrt(n_in)))

    # tied embedding: rows of rms 1 (the output logits then have std ~ sqrt(n_embd)/..., peaked enough)
    w.add_tensor("token_embd.weight", normal_f16("token_embd.weight", (N_VOCAB, N_EMBD), 1.0))
    w.add_tensor("rope_freqs.weight", llama3_rope_factors(HEAD_DIM, ROPE_BASE, 32.0, 1.0, 4.0, 8192))
    w.add_tensor("output_norm.weight", uniform_f32("output_norm.weight", N_EMBD, 0.05, 0.1))
    for i in range(N_LAYER):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", uniform_f32(b + "attn_norm.weight", N_EMBD))
        mat(b + "attn_q.weight", N_HEAD * HEAD_DIM, N_EMBD, 2.0)
        mat(b + "attn_k.weight", N_HEAD_KV * HEAD_DIM, N_EMBD, 2.0)
        mat(b + "attn_v.weight", N_HEAD_KV * HEAD_DIM, N_EMBD)
        mat(b + "attn_output.weight", N_EMBD, N_HEAD * HEAD_DIM, 0.5)
        w.add_tensor(b + "ffn_norm.weight", uniform_f32(b + "ffn_norm.weight", N_EMBD))
        mat(b + "ffn_gate.weight", N_FF, N_EMBD)
        mat(b + "ffn_up.weight", N_FF, N_EMBD)
        mat(b + "ffn_down.weight", N_EMBD, N_FF, 0.5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(part, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
