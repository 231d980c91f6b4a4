#!/usr/bin/env node
// npm pack's `prepack` step (package.json): refuses to pack without the three wasm builds (the
// package would install and then fail in the browser), and generates types/ from the JSDoc.

import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const missing = ['pkg', 'pkg-relaxed', 'pkg-threads']
  .flatMap((d) => [`www/${d}/hearth.js`, `www/${d}/hearth_bg.wasm`])
  .concat(['www/vendor/markdown-it.mjs']) // the element's markdown renderer (build.sh need_vendor)
  .filter((f) => !existsSync(join(ROOT, f)));
if (missing.length) {
  console.error(`npm pack: not built: ${missing.join(', ')} (run ./build.sh pack, or ./build.sh wasm first)`);
  process.exit(1);
}
rmSync(join(ROOT, 'types'), { recursive: true, force: true });
execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.types.json')], { stdio: 'inherit' });
