#!/usr/bin/env python3
"""Chat-template fixtures: real models' templates rendered the way Hugging Face's apply_chat_template renders them.

The templates are the ones llama.cpp keeps in models/templates/ (its copies of each model's tokenizer_config.json
template), read from the llama.cpp vendored in PyPI's llama-cpp-python 0.3.36 sdist (tools/reference/build-llama.sh
unpacks it). Each is rendered with Jinja2 3.1.6 in the environment transformers builds for chat templates: a sandboxed
environment with trim_blocks, lstrip_blocks and loop controls, `raise_exception`, a `tojson` filter that keeps
non-ASCII, and `strftime_now` — here with a fixed clock (2026-03-14 09:26:53 UTC) so the fixture is deterministic; the
tests give hearth's renderer the same clock.

    python3 tools/reference/make_template_fixtures.py /work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates

writes tests/fixtures/templates/templates.json: for each template its source, BOS/EOS texts and cases (messages,
add_generation_prompt, extra variables such as Qwen3's enable_thinking) with the expected text, or the error
message when the template raises.
"""
import datetime
import json
import pathlib
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

NOW = datetime.datetime(2026, 3, 14, 9, 26, 53)

# (file, name, bos, eos): the BOS/EOS texts each model's tokenizer_config.json gives.
TEMPLATES = [
    ("Qwen-Qwen3-0.6B.jinja", "qwen3", "", "<|im_end|>"),
    ("Qwen-Qwen2.5-7B-Instruct.jinja", "qwen2.5", "", "<|im_end|>"),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", "llama3.2", "<|begin_of_text|>", "<|eot_id|>"),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3.1", "<|begin_of_text|>", "<|eot_id|>"),
    ("google-gemma-2-2b-it.jinja", "gemma2", "<bos>", "<eos>"),
    ("LFM2.5-Instruct.jinja", "lfm2.5", "<|startoftext|>", "<|im_end|>"),
    ("HuggingFaceTB-SmolLM3-3B.jinja", "smollm3", "", "<|im_end|>"),
]

SYSTEM = {"role": "system", "content": "You are a careful assistant. Answer briefly."}
U1 = {"role": "user", "content": "What is the capital of France?"}
A1 = {"role": "assistant", "content": "Paris."}
A1_THINK = {"role": "assistant", "content": "<think>\nThe user asks about France.\n</think>\n\nParis."}
U2 = {"role": "user", "content": "  And of Italy? Say it in **bold** — ünïcödé, <|im_end|> as text.  "}

CASES = [
    ("one user turn", [U1], True, {}),
    ("system and turns", [SYSTEM, U1, A1, U2], True, {}),
    ("no generation prompt", [SYSTEM, U1, A1], False, {}),
    ("past thinking is dropped", [U1, A1_THINK, U2], True, {}),
    ("thinking off", [SYSTEM, U1], True, {"enable_thinking": False}),
    ("thinking on", [U1], True, {"enable_thinking": True}),
    ("roles out of order", [U1, U2], True, {}),
]


def environment():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)
    return env


def main():
    src_dir = pathlib.Path(sys.argv[1])
    out = pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/templates/templates.json"
    env = environment()
    fixtures = []
    for file, name, bos, eos in TEMPLATES:
        source = (src_dir / file).read_text()
        tmpl = env.from_string(source)
        cases = []
        for label, messages, add_gen, extra in CASES:
            case = {"label": label, "messages": messages, "add_generation_prompt": add_gen, "extra": extra}
            try:
                case["expected"] = tmpl.render(
                    messages=messages, add_generation_prompt=add_gen, bos_token=bos, eos_token=eos, **extra
                )
            except jinja2.exceptions.TemplateError as e:
                case["error"] = str(e)
            cases.append(case)
        fixtures.append({"name": name, "file": file, "bos": bos, "eos": eos, "source": source, "cases": cases})
    doc = {
        "made_by": "tools/reference/make_template_fixtures.py",
        "jinja2": jinja2.__version__,
        "clock": NOW.isoformat(),
        "templates": fixtures,
    }
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {sum(len(t['cases']) for t in fixtures)} cases")


if __name__ == "__main__":
    main()
