// A helper thread of hearth's threaded build. worker.js starts one per extra thread and sends it
// the compiled module and the shared memory; this instantiates the same engine on them and runs
// its pool loop (src/parallel.rs) forever. It ends when the engine's worker ends.
self.onmessage = async ({ data }) => {
  let mod;
  try {
    mod = await import(data.pkg);
    await mod.default({ module_or_path: data.module, memory: data.memory });
  } catch (e) {
    postMessage({ error: String(e?.message ?? e) });
    return;
  }
  postMessage({ ready: true });
  mod.threadMain();
};
