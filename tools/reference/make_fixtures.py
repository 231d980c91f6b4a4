#!/usr/bin/env python3
"""Writes llama.cpp reference fixtures (tokenize / greedy / logits / perplexity JSON, logits/*.f32) for one GGUF.

Drives tools/reference/refclient (our llama.h client) and llama.cpp's llama-perplexity, both built by
tools/reference/build-llama.sh. JSON shapes follow tests/fixtures/{tokenize,greedy,logits,perplexity}.json.

  python3 tools/reference/make_fixtures.py --set gemma3-270m --model models/gemma-3-270m-Q4_K_M.gguf \
      --out tests/fixtures/gemma3-270m [--llama /work/llama] [--threads 2]
  python3 tools/reference/make_fixtures.py --set tiny --model models/tiny/tiny-qwen3.gguf --out tests/fixtures/tiny-qwen3

--set picks the prompt lists below; --extra-meta adds a JSON object to every file's meta (the generator's
command and the file's sha256 for the tiny models).
"""
import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile

LLAMA_COMMIT = "0c1e57098"
ENGINE = f"llama.cpp commit {LLAMA_COMMIT} (vendored in llama-cpp-python 0.3.36), CPU build, tools/reference/build-llama.sh flags"
CLIENT = ("tools/reference/refclient.cpp: tokenize(add_special=true, i.e. BOS/EOS only as the vocab's add_bos_token/"
          "add_eos_token say; parse_special=true); one llama_decode of the whole prompt (n_batch 2048, n_ubatch 512, "
          "n_ctx 2048, f16 KV cache, flash_attn auto, THREADS threads); then greedy argmax (ties -> lowest id) one "
          "token at a time, stopping after an end-of-generation token (included) or max_new tokens")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Greedy / logits prompts (raw text; special-token text is parsed).
SETS = {
    "gemma3-270m": {
        "greedy_max_new": 32,
        "greedy": [
            ("capital_france", "The capital of France is"),
            ("once_upon", "Once upon a time, there was a"),
            ("def_fib", "def fibonacci(n):\n"),
            ("counting", "1, 2, 3, 4, 5,"),
            ("water_boils", "Water boils at a temperature of"),
            ("translate", "Translate to French: Hello, how are you?\nFrench:"),
            ("turn_template", "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"),
            ("list_markdown", "# Shopping list\n\n- apples\n- "),
        ],
        "logits": [
            ("raw_capital", "The capital of France is"),
            ("turn_template", "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"),
            ("code", "def fibonacci(n):\n    if n < 2:\n        return n\n    return"),
        ],
        "extra_tokenize": [
            ("gemma_turn", "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"),
            ("gemma_bos_text", "<bos>hello<eos>"),
        ],
        "perplexity_ctx": [512, 128, 1024],
    },
    "tiny": {
        "greedy_max_new": 16,
        "greedy": [
            ("capital_france", "The capital of France is"),
            ("once_upon", "Once upon a time, there was a little"),
            ("def_fib", "def fib(n):\n    if n < 2:\n        return n\n"),
            ("counting", "1, 2, 3, 4, 5,"),
            ("chatml", "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"),
            ("long_window", "The quick brown fox jumps over the lazy dog. A second sentence makes this prompt longer "
                            "than any sliding window, so local layers must forget its beginning."),
        ],
        "logits": [
            ("raw_capital", "The capital of France is"),
            ("long_window", "The quick brown fox jumps over the lazy dog. A second sentence makes this prompt longer "
                            "than any sliding window, so local layers must forget its beginning."),
        ],
        "extra_tokenize": [],
        "tokenize_names": ["plain_english", "hello_world", "leading_space", "multiple_spaces", "newlines", "digits_numbers",
                           "code_python", "emoji", "cjk", "accented_latin", "chatml_special_inside", "empty"],
        "perplexity_ctx": [128],
    },
}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Llama:
    def __init__(self, root, model, threads):
        self.bin = os.path.join(root, "llama_cpp_python-0.3.36", "vendor", "llama.cpp", "build", "bin")
        self.client = os.path.join(root, "refclient")
        self.model = model
        self.threads = threads

    def client_run(self, mode, lines):
        with tempfile.NamedTemporaryFile("w", suffix=".cases", delete=False) as f:
            f.write("".join(l + "\n" for l in lines))
            name = f.name
        try:
            out = run([self.client, self.model, str(self.threads), mode, name]).stdout
        finally:
            os.unlink(name)
        return out.splitlines()

    def info(self):
        return json.loads(run([self.client, self.model, str(self.threads), "info"]).stdout)

    def tokenize(self, cases):  # cases: [(text, parse_special)]
        out = self.client_run("tokenize", [f"{int(ps)} {t.encode().hex() or '-'}" for t, ps in cases])
        return [[int(x) for x in line.split()] for line in out]


def base_meta(model_path, threads, extra):
    meta = {"model": os.path.basename(model_path), "model_sha256": sha256_file(model_path), "engine": ENGINE,
            "client": CLIENT, "threads": threads}
    meta.update(extra)
    return meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", required=True, choices=sorted(SETS))
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--llama", default="/work/llama")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extra-meta", default="{}")
    ap.add_argument("--skip-perplexity", action="store_true")
    ap.add_argument("--only-perplexity", action="store_true")
    args = ap.parse_args()
    spec = SETS[args.set]
    extra = json.loads(args.extra_meta)
    llama = Llama(args.llama, args.model, args.threads)
    info = llama.info()
    os.makedirs(os.path.join(args.out, "logits"), exist_ok=True)
    meta = base_meta(args.model, args.threads, extra)
    meta["system_info"] = info["system_info"]
    meta["vocab"] = {"n_vocab": info["n_vocab"], "bos": info["bos"], "eos": info["eos"], "add_bos": info["add_bos"],
                     "add_eos": info["add_eos"]}

    if args.only_perplexity:
        return write_perplexity(llama, spec, args, meta, info)

    # tokenize: the default model's texts, both parse_special settings, plus set-specific texts.
    base = json.load(open(os.path.join(REPO, "tests", "fixtures", "tokenize.json")))
    texts, seen = [], set()
    for c in base["cases"]:
        if c["name"] in seen:
            continue
        if "tokenize_names" in spec and c["name"] not in spec["tokenize_names"]:
            continue
        seen.add(c["name"])
        texts.append((c["name"], c["text"]))
    texts += spec["extra_tokenize"]
    cases = [(name, text, ps) for name, text in texts for ps in (True, False)]
    ids = llama.tokenize([(t, ps) for _, t, ps in cases])
    tok_cases = []
    for (name, text, ps), got in zip(cases, ids):
        tok_cases.append({"name": name, "text": text, "utf8_bytes": len(text.encode()), "parse_special": ps,
                          "add_bos": info["add_bos"], "ids": got, "n_tokens": len(got)})
    tmeta = dict(meta)
    tmeta["notes"] = ("llama_tokenize(add_special=true, parse_special) as llama-tokenize does by default: BOS is "
                      f"prepended iff the vocab's add_bos_token is true (here {info['add_bos']}); parse_special=false "
                      "tokenizes special-token text as plain text.")
    json.dump({"meta": tmeta, "cases": tok_cases}, open(os.path.join(args.out, "tokenize.json"), "w"), indent=1,
              ensure_ascii=False)

    # greedy
    prompts = spec["greedy"]
    pids = llama.tokenize([(p, True) for _, p in prompts])
    outs = llama.client_run("greedy", [f"{spec['greedy_max_new']} " + " ".join(map(str, i)) for i in pids])
    g_cases = []
    for (name, prompt), pi, line in zip(prompts, pids, outs):
        o = json.loads(line)
        g_cases.append({"name": name, "kind": "raw", "prompt": prompt, "prompt_ids": pi,
                        "generated_ids": o["generated_ids"],
                        "generated_text": bytes.fromhex(o["generated_text_hex"]).decode("utf-8", "replace"),
                        "stopped_at_eog": o["stopped_at_eog"],
                        "note": f"at most {spec['greedy_max_new']} tokens; generated_ids includes the end-of-generation token if it stopped on one",
                        "step_top1_logit": [round(x, 4) for x in o["step_top1_logit"]],
                        "step_top1_minus_top2": [round(x, 4) for x in o["step_top1_minus_top2"]],
                        "first_step_top10": [[i, round(v, 4)] for i, v in o["first_step_top10"]]})
    json.dump({"meta": meta, "cases": g_cases}, open(os.path.join(args.out, "greedy.json"), "w"), indent=1,
              ensure_ascii=False)

    # logits at the last prompt position
    lprompts = spec["logits"]
    lids = llama.tokenize([(p, True) for _, p in lprompts])
    files = [os.path.join(args.out, "logits", f"{name}.f32") for name, _ in lprompts]
    outs = llama.client_run("logits", [f"{os.path.abspath(f)} " + " ".join(map(str, i)) for f, i in zip(files, lids)])
    import numpy as np
    l_cases = []
    for (name, prompt), li, f, line in zip(lprompts, lids, files, outs):
        o = json.loads(line)
        v = np.fromfile(f, dtype="<f4").astype(np.float64)
        lse = float(np.log(np.sum(np.exp(v - v.max()))) + v.max())
        l_cases.append({"name": name, "prompt": prompt, "prompt_ids": li,
                        "top10": [[i, round(x, 6), bytes.fromhex(p).decode("utf-8", "replace")] for i, x, p in o["top10"]],
                        "stats_full_vector": {"logsumexp": round(lse, 6), "mean": round(float(v.mean()), 6),
                                              "rms": round(float(np.sqrt(np.mean(v * v))), 6)},
                        "full_logits_file": f"logits/{name}.f32", "full_logits_sha256": sha256_file(f)})
    lmeta = dict(meta)
    lmeta["note"] = (f"raw pre-softmax logits at the LAST prompt position; top10 entries are [id, logit, piece]; full "
                     f"{info['n_vocab']}-float little-endian float32 vectors in logits/*.f32")
    json.dump({"meta": lmeta, "cases": l_cases}, open(os.path.join(args.out, "logits.json"), "w"), indent=1,
              ensure_ascii=False)

    if not args.skip_perplexity:
        write_perplexity(llama, spec, args, meta, info)


def write_perplexity(llama, spec, args, meta, info):
    text_path = os.path.join(REPO, "tests", "fixtures", "texts", "MPL-2.0.txt")
    text = open(text_path, "rb").read().decode("utf-8")
    text = text[:-1] if text.endswith("\n") else text
    n_tok = len(llama.tokenize([(text, False)])[0])  # as llama-perplexity tokenizes it (it does not print this)
    runs = []
    for n_ctx in spec["perplexity_ctx"]:
        cmd = [os.path.join(llama.bin, "llama-perplexity"), "-m", args.model, "-f", text_path, "-c", str(n_ctx),
               "-b", str(n_ctx), "-t", str(args.threads)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        log = p.stdout + p.stderr
        if p.returncode != 0:
            sys.exit(f"llama-perplexity failed:\n{log[-3000:]}")
        running = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+)", log)]
        m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
        n_chunks = len(running)
        runs.append({"text": "MPL-2.0", "copy": "../texts/MPL-2.0.txt", "sha256": sha256_file(text_path),
                     "bytes": os.path.getsize(text_path), "n_tokens_text": n_tok, "n_ctx": n_ctx, "n_batch": n_ctx,
                     "n_chunks": n_chunks, "scored_tokens": n_chunks * (n_ctx // 2 - 1),
                     "ppl": float(m.group(1)), "ppl_stderr": float(m.group(2)),
                     "ln_ppl": round(math.log(float(m.group(1))), 6),
                     "running_ppl_after_each_chunk": running,
                     "command": f"llama-perplexity -m MODEL -f tests/fixtures/texts/MPL-2.0.txt -c {n_ctx} -b {n_ctx} -t {args.threads}"})
    pmeta = dict(meta)
    bos = info["add_bos"]
    pmeta["definition"] = (
        "text = file bytes with ONE trailing '\\n' removed; tokens = tokenize(text, add_special=true "
        f"(add_bos_token={str(bos).lower()}" + (": tokens[0] is BOS" if bos else ": no BOS") + "), parse_special=false); "
        "n_chunks = floor(len(tokens)/n_ctx); chunk i = tokens[i*n_ctx:(i+1)*n_ctx]"
        + (" with its FIRST token replaced by BOS" if bos else "")
        + ", evaluated from an empty KV cache in one batch; NLL summed over positions p = n_ctx/2 .. n_ctx-2 "
        "(logits at p predict token p+1), i.e. n_ctx/2-1 scored tokens per chunk; PPL = exp(total NLL / scored "
        "tokens). Trailing tokens beyond n_chunks*n_ctx are ignored. n_tokens_text counts the BOS if added.")
    json.dump({"meta": pmeta, "runs": runs}, open(os.path.join(args.out, "perplexity.json"), "w"), indent=1,
              ensure_ascii=False)


if __name__ == "__main__":
    main()
