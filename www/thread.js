// A helper thread of hearth's threaded build. worker.js starts one per extra thread and sends it
// the compiled module and the shared memory; this instantiates the same engine on them and runs
// its pool loop (src/parallel.rs) forever. It ends when the engine's worker ends.
// The glue is imported by a literal path so bundlers resolve it (worker.js imports the same file).

import init, { threadMain } from './pkg-threads/hearth.js';

self.onmessage = async ({ data }) => {
  try {
    await init({ module_or_path: data.module, memory: data.memory });
  } catch (e) {
    postMessage({ error: String(e?.message ?? e) });
    return;
  }
  postMessage({ ready: true });
  threadMain();
};
