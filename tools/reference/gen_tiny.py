#!/usr/bin/env python3
"""Deterministic generator of tiny synthetic GGUF models, one per architecture hearth supports beyond SmolLM2's.

Each file (a few MB) has the metadata keys and tensor names llama.cpp 0c1e57098 reads for its family, random but
seeded weights in the quant types the real Q4_K_M files use where rows allow (Q8_0 embeddings, Q5_0/Q8_0 for
64-wide rows, Q4_K/Q6_K for 256-wide rows, F32 norms/biases/conv), scaled so the logits are peaked, and a real
tokenizer vocab borrowed from a model build.sh fetches:
  llama   Llama 3.x form: rope_freqs.weight (llama3 frequency factors) + rope.scaling keys, pre "llama-bpe"
  qwen2   q/k/v biases, NEOX rope, pre "qwen2"
  qwen3   per-head q/k RMSNorm, head_dim*n_head (256) != n_embd (64), pre "qwen2"
  gemma3  sqrt(n_embd) embedding scale, q/k norms, post-attention/post-FFN norms, GELU-tanh gated FFN,
          sliding window 8 on local layers (own rope base), every 6th layer global; Gemma's SentencePiece vocab
          trimmed to its first 16384 ids
  lfm2    short-convolution blocks (l_cache 3) + GQA attention blocks with q/k norms, pre "lfm2"
BPE vocab: SmolLM2-135M-Instruct's 49152-token vocab/merges (models/SmolLM2-135M-Instruct.Q4_1.gguf), relabelled.

  python3 tools/reference/gen_tiny.py [--out models/tiny] [--arch llama,qwen2,...]
      [--smollm models/SmolLM2-135M-Instruct.Q4_1.gguf] [--gemma models/gemma-3-270m-Q4_K_M.gguf]
Prints "<sha256>  <path>" per file. Needs gguf==0.19.0 and numpy==2.4.6 (pinned: the output bytes, and so the
sha256 recorded in tests/fixtures/tiny-*/, depend on their float rounding and random streams).
"""
import argparse
import hashlib
import os
import sys
import zlib

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

GGUF_VERSION = "0.19.0"
NUMPY_VERSION = "2.4.6"
N_EMBD = 64
N_FF = 256
GEMMA_VOCAB = 16384


def check_versions():
    import importlib.metadata as md
    have = (md.version("gguf"), np.__version__)
    if have != (GGUF_VERSION, NUMPY_VERSION):
        print(f"warning: gguf {have[0]} / numpy {have[1]} (pinned {GGUF_VERSION} / {NUMPY_VERSION}); "
              "the files may differ from the recorded sha256", file=sys.stderr)


class Weights:
    """Seeded weight factory: one generator per (arch, tensor name), so tensors are independent of order."""

    def __init__(self, arch):
        self.arch = arch

    def rng(self, name):
        return np.random.default_rng([zlib.crc32(self.arch.encode()), zlib.crc32(name.encode())])

    def normal(self, name, shape, std):
        return (self.rng(name).standard_normal(shape) * std).astype(np.float32)

    def uniform(self, name, shape, lo, hi):
        return self.rng(name).uniform(lo, hi, shape).astype(np.float32)

    def matrix(self, name, n_out, n_in, gain, qtype):
        """(n_out, n_in) weight whose product with an rms-1 input has rms ~gain, as qtype bytes (or f32)."""
        std = gain / np.sqrt(n_in)
        if qtype in (T.Q4_K, T.Q6_K):
            return random_kquant(self.rng(name), n_out, n_in, std, qtype), qtype
        w = self.normal(name, (n_out, n_in), std)
        if qtype == T.F32:
            return w, None
        return gguf.quants.quantize(w, qtype), qtype


def random_kquant(rng, n_out, n_in, std, qtype):
    """Random but valid Q4_K / Q6_K super-blocks (256 weights each) with per-block d scaled to the target std."""
    assert n_in % 256 == 0
    nb = n_out * n_in // 256
    if qtype == T.Q4_K:
        # d f16, dmin f16, scales[12] (6-bit scales and mins), qs[128] (4-bit)
        body = rng.integers(0, 256, size=(nb, 140), dtype=np.uint8)
        unit = np.zeros((nb, 144), dtype=np.uint8)
        unit[:, 0:2] = np.frombuffer(np.float16(1.0).tobytes(), np.uint8)
        unit[:, 2:4] = np.frombuffer(np.float16(7.5).tobytes(), np.uint8)  # dmin = 7.5 d: roughly zero mean
        unit[:, 4:] = body
        s = gguf.quants.dequantize(unit, T.Q4_K).std()
        d = (std / s) * rng.uniform(0.6, 1.4, nb)
        out = unit.copy()
        out[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(nb, 2)
        out[:, 2:4] = (d * 7.5).astype(np.float16).view(np.uint8).reshape(nb, 2)
        return out.reshape(n_out, n_in // 256 * 144)
    # Q6_K: ql[128], qh[64], scales[16] int8, d f16
    unit = np.zeros((nb, 210), dtype=np.uint8)
    unit[:, :192] = rng.integers(0, 256, size=(nb, 192), dtype=np.uint8)
    unit[:, 192:208] = rng.integers(-127, 128, size=(nb, 16)).astype(np.int8).view(np.uint8)
    unit[:, 208:210] = np.frombuffer(np.float16(1.0).tobytes(), np.uint8)
    s = gguf.quants.dequantize(unit, T.Q6_K).std()
    d = (std / s) * rng.uniform(0.6, 1.4, nb)
    unit[:, 208:210] = d.astype(np.float16).view(np.uint8).reshape(nb, 2)
    return unit.reshape(n_out, n_in // 256 * 210)


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_NP = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32,
            7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
_META_CACHE = {}


def read_metadata(path):
    """GGUF v3 key/value section only (gguf.GGUFReader builds a numpy view per array element: a minute for a
    vocab). Returns {key: value}; string arrays as lists of str, numeric arrays as numpy arrays."""
    if path in _META_CACHE:
        return _META_CACHE[path]
    with open(path, "rb") as f:
        buf = f.read(64 << 20)
    import struct
    magic, version, _n_tensors, n_kv = struct.unpack_from("<IIQQ", buf, 0)
    assert magic == 0x46554747 and version == 3, path
    pos = 24

    def string(pos):
        (n,) = struct.unpack_from("<Q", buf, pos)
        return buf[pos + 8:pos + 8 + n].decode("utf-8"), pos + 8 + n

    def value(t, pos):
        if t == 8:
            return string(pos)
        if t == 9:
            (et, n) = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if et == 8:
                out = []
                for _ in range(n):
                    v, pos = string(pos)
                    out.append(v)
                return out, pos
            arr = np.frombuffer(buf, dtype=_GGUF_NP[et], count=n, offset=pos)
            return arr, pos + arr.nbytes
        fmt = _GGUF_SCALARS[t]
        return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)

    meta = {}
    for _ in range(n_kv):
        key, pos = string(pos)
        (t,) = struct.unpack_from("<I", buf, pos)
        meta[key], pos = value(t, pos + 4)
    _META_CACHE[path] = meta
    return meta


def add_bpe_vocab(w, src, pre, add_bos):
    m = read_metadata(src)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(m["tokenizer.ggml.tokens"])
    w.add_token_types(m["tokenizer.ggml.token_type"].astype(np.int32).tolist())
    w.add_token_merges(m["tokenizer.ggml.merges"])
    w.add_bos_token_id(int(m["tokenizer.ggml.bos_token_id"]))
    w.add_eos_token_id(int(m["tokenizer.ggml.eos_token_id"]))
    w.add_unk_token_id(int(m["tokenizer.ggml.unknown_token_id"]))
    w.add_pad_token_id(int(m["tokenizer.ggml.padding_token_id"]))
    w.add_add_bos_token(add_bos)
    return len(m["tokenizer.ggml.tokens"])


def add_gemma_vocab(w, src):
    m = read_metadata(src)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(m["tokenizer.ggml.tokens"][:GEMMA_VOCAB])
    w.add_token_scores(m["tokenizer.ggml.scores"][:GEMMA_VOCAB].astype(np.float32).tolist())
    w.add_token_types(m["tokenizer.ggml.token_type"][:GEMMA_VOCAB].astype(np.int32).tolist())
    for key, fn in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id),
                    ("unknown_token_id", w.add_unk_token_id), ("padding_token_id", w.add_pad_token_id)):
        fn(int(m["tokenizer.ggml." + key]))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    return GEMMA_VOCAB


class Builder:
    def __init__(self, arch, path):
        self.arch = arch
        self.w = gguf.GGUFWriter(path, arch)
        self.wt = Weights(arch)
        self.w.add_name(f"hearth tiny {arch}")
        self.w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)

    def t(self, name, data, qtype=None):
        if qtype is None:
            self.w.add_tensor(name, data)
        else:
            self.w.add_tensor(name, data, raw_dtype=qtype)

    def mat(self, name, n_out, n_in, gain, qtype):
        data, q = self.wt.matrix(name, n_out, n_in, gain, qtype)
        self.t(name, data, q)

    def norm(self, name, n, lo=0.8, hi=1.2):
        self.t(name, self.wt.uniform(name, (n,), lo, hi))

    def embd(self, n_vocab, std):
        data = gguf.quants.quantize(self.wt.normal("token_embd.weight", (n_vocab, N_EMBD), std), T.Q8_0)
        self.t("token_embd.weight", data, T.Q8_0)

    def ffn(self, i, down_q):
        self.norm(f"blk.{i}.ffn_norm.weight", N_EMBD)
        self.mat(f"blk.{i}.ffn_gate.weight", N_FF, N_EMBD, 1.0, T.Q5_0)
        self.mat(f"blk.{i}.ffn_up.weight", N_FF, N_EMBD, 1.0, T.Q5_0)
        self.mat(f"blk.{i}.ffn_down.weight", N_EMBD, N_FF, 2.0, down_q)

    def attn(self, i, n_head, n_head_kv, head_dim, qk_gain, o_q):
        self.mat(f"blk.{i}.attn_q.weight", n_head * head_dim, N_EMBD, qk_gain, T.Q5_0)
        self.mat(f"blk.{i}.attn_k.weight", n_head_kv * head_dim, N_EMBD, qk_gain, T.Q5_0)
        self.mat(f"blk.{i}.attn_v.weight", n_head_kv * head_dim, N_EMBD, 1.0, T.Q8_0)
        self.mat(f"blk.{i}.attn_output.weight", N_EMBD, n_head * head_dim, 2.0, o_q)

    def finish(self):
        self.w.write_header_to_file()
        self.w.write_kv_data_to_file()
        self.w.write_tensors_to_file()
        self.w.close()


def common_hparams(b, n_layer, n_head, n_head_kv, eps, rope_base):
    w = b.w
    w.add_context_length(2048)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(eps)
    w.add_rope_freq_base(rope_base)


def down_type(i):
    return T.Q6_K if i % 2 == 0 else T.Q4_K  # Q4_K_M keeps about half the ffn_down rows in Q6_K


def llama3_rope_factors(head_dim, base, factor, low, high, orig_ctx):
    """Llama 3.x frequency factors, as Meta's reference and llama.cpp's converter compute them."""
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / (base ** (i / head_dim))
        wavelen = 2 * np.pi / freq
        if wavelen < orig_ctx / high:
            out.append(1.0)
        elif wavelen > orig_ctx / low:
            out.append(factor)
        else:
            smooth = (orig_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def gen_llama(path, smollm):
    b = Builder("llama", path)
    n_layer, n_head, n_head_kv, head_dim = 2, 4, 2, 16
    common_hparams(b, n_layer, n_head, n_head_kv, 1e-5, 500000.0)
    b.w.add_rope_dimension_count(head_dim)
    b.w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    b.w.add_rope_scaling_factor(2.0)
    n_vocab = add_bpe_vocab(b.w, smollm, "llama-bpe", True)
    b.w.add_vocab_size(n_vocab)
    b.embd(n_vocab, 1.0)
    b.t("rope_freqs.weight", llama3_rope_factors(head_dim, 500000.0, 8.0, 1.0, 4.0, 64))
    b.norm("output_norm.weight", N_EMBD)
    for i in range(n_layer):
        b.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        b.attn(i, n_head, n_head_kv, head_dim, 2.0, T.Q5_0)
        b.ffn(i, down_type(i))
    b.finish()


def gen_qwen2(path, smollm):
    b = Builder("qwen2", path)
    n_layer, n_head, n_head_kv, head_dim = 2, 4, 2, 16
    common_hparams(b, n_layer, n_head, n_head_kv, 1e-6, 1000000.0)
    n_vocab = add_bpe_vocab(b.w, smollm, "qwen2", False)
    b.embd(n_vocab, 1.0)
    b.norm("output_norm.weight", N_EMBD)
    for i in range(n_layer):
        b.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        b.attn(i, n_head, n_head_kv, head_dim, 2.0, T.Q5_0)
        for n, rows in (("q", n_head * head_dim), ("k", n_head_kv * head_dim), ("v", n_head_kv * head_dim)):
            b.t(f"blk.{i}.attn_{n}.bias", b.wt.normal(f"blk.{i}.attn_{n}.bias", (rows,), 0.5))
        b.ffn(i, down_type(i))
    b.finish()


def gen_qwen3(path, smollm):
    b = Builder("qwen3", path)
    n_layer, n_head, n_head_kv, head_dim = 2, 4, 2, 64
    common_hparams(b, n_layer, n_head, n_head_kv, 1e-6, 1000000.0)
    b.w.add_key_length(head_dim)
    b.w.add_value_length(head_dim)
    n_vocab = add_bpe_vocab(b.w, smollm, "qwen2", False)
    b.embd(n_vocab, 1.0)
    b.norm("output_norm.weight", N_EMBD)
    for i in range(n_layer):
        b.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        b.attn(i, n_head, n_head_kv, head_dim, 1.0, T.Q4_K)
        b.norm(f"blk.{i}.attn_q_norm.weight", head_dim, 1.5, 2.5)
        b.norm(f"blk.{i}.attn_k_norm.weight", head_dim, 1.5, 2.5)
        b.ffn(i, down_type(i))
    b.finish()


def gen_gemma3(path, gemma):
    b = Builder("gemma3", path)
    n_layer, n_head, n_head_kv, head_dim = 7, 4, 1, 64  # layers 0-4 and 6 local (sliding window), 5 global
    common_hparams(b, n_layer, n_head, n_head_kv, 1e-6, 1000000.0)
    b.w.add_key_length(head_dim)
    b.w.add_value_length(head_dim)
    b.w.add_sliding_window(8)
    b.w.add_rope_freq_base_swa(10000.0)
    add_gemma_vocab(b.w, gemma)
    # the graph scales embeddings by sqrt(n_embd) = 8: std 1/8 gives an rms-1 residual stream
    b.embd(GEMMA_VOCAB, 1.0 / 8)
    b.norm("output_norm.weight", N_EMBD, 6.0, 10.0)  # tied output: logits std ~ 8 * (1/8) * 8
    for i in range(n_layer):
        b.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        b.attn(i, n_head, n_head_kv, head_dim, 1.0, T.Q4_K)
        b.norm(f"blk.{i}.attn_q_norm.weight", head_dim, 1.5, 2.5)
        b.norm(f"blk.{i}.attn_k_norm.weight", head_dim, 1.5, 2.5)
        b.norm(f"blk.{i}.post_attention_norm.weight", N_EMBD, 1.5, 2.5)
        b.ffn(i, down_type(i))
        b.norm(f"blk.{i}.post_ffw_norm.weight", N_EMBD, 1.5, 2.5)
    b.finish()


def gen_lfm2(path, smollm):
    b = Builder("lfm2", path)
    kinds = ["conv", "attn", "conv", "attn"]
    n_head, n_kv, head_dim, l_cache = 4, 2, 16, 3
    common_hparams(b, len(kinds), n_head, [n_kv if k == "attn" else 0 for k in kinds], 1e-5, 1000000.0)
    b.w.add_shortconv_l_cache(l_cache)
    n_vocab = add_bpe_vocab(b.w, smollm, "lfm2", True)
    b.w.add_vocab_size(n_vocab)
    b.embd(n_vocab, 1.0)
    b.norm("token_embd_norm.weight", N_EMBD)  # llama.cpp's name for LFM2's final norm
    for i, kind in enumerate(kinds):
        b.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
        if kind == "attn":
            b.attn(i, n_head, n_kv, head_dim, 1.0, T.Q5_0)
            b.norm(f"blk.{i}.attn_q_norm.weight", head_dim, 1.5, 2.5)
            b.norm(f"blk.{i}.attn_k_norm.weight", head_dim, 1.5, 2.5)
        else:
            b.mat(f"blk.{i}.shortconv.in_proj.weight", 3 * N_EMBD, N_EMBD, 1.5, T.Q5_0)
            b.t(f"blk.{i}.shortconv.conv.weight", b.wt.normal(f"blk.{i}.shortconv.conv.weight", (N_EMBD, l_cache), 0.8))
            b.mat(f"blk.{i}.shortconv.out_proj.weight", N_EMBD, N_EMBD, 2.0, T.Q5_0)
        b.ffn(i, down_type(i))
    b.finish()


GENERATORS = {"llama": (gen_llama, "smollm"), "qwen2": (gen_qwen2, "smollm"), "qwen3": (gen_qwen3, "smollm"),
              "gemma3": (gen_gemma3, "gemma"), "lfm2": (gen_lfm2, "smollm")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/tiny")
    ap.add_argument("--arch", default=",".join(GENERATORS))
    ap.add_argument("--smollm", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--gemma", default="models/gemma-3-270m-Q4_K_M.gguf")
    args = ap.parse_args()
    check_versions()
    os.makedirs(args.out, exist_ok=True)
    for arch in args.arch.split(","):
        fn, src = GENERATORS[arch]
        path = os.path.join(args.out, f"tiny-{arch}.gguf")
        fn(path + ".partial", args.smollm if src == "smollm" else args.gemma)
        os.replace(path + ".partial", path)
        with open(path, "rb") as f:
            print(f"{hashlib.sha256(f.read()).hexdigest()}  {path}")


if __name__ == "__main__":
    main()
