// Memory of a headless Chromium's renderer processes, read from Linux's /proc: shared by the
// benchmark (tools/bench.mjs) and the browser tests (tests/browser/helpers.mjs).

import { readdirSync, readFileSync } from 'node:fs';

/**
 * This browser's renderer processes: pid, current and peak resident memory (bytes). A renderer
 * belongs to this browser when an ancestor's command line names its profile directory. A page's
 * dedicated workers (hearth's engine) live in its renderer, so its peak (VmHWM) covers them.
 * @param {string} profile  the browser's profile directory
 * @returns {{pid: number, rss: number, hwm: number}[]}
 */
export function renderers(profile) {
  const procs = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
      procs.set(pid, { ppid, cmd: readFileSync(`/proc/${pid}/cmdline`, 'utf8') });
    } catch {}
  }
  const ours = (pid) => {
    for (let p = pid, i = 0; p && i < 8; p = procs.get(p)?.ppid, i++) if (procs.get(p)?.cmd.includes(profile)) return true;
    return false;
  };
  const out = [];
  for (const [pid, p] of procs) {
    if (!p.cmd.includes('--type=renderer') || !ours(pid)) continue;
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
      out.push({ pid: Number(pid), rss: kb('VmRSS'), hwm: kb('VmHWM') });
    } catch {}
  }
  return out;
}
