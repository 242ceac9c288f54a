// The reproducible build recipe, whole: moc.js (+ its bundled packages such as mo:core, + the app's
// packages, public candid:service/args) -> ic-wasm shrink -> ic-wasm metadata candid:service (public), in
// that order. The host (`make build`, `prometheus build`) and the verifier's sandbox run this same file.
// Usage: node compile.js <motoko_pkg_dir> <ic_wasm_binary> <source_root> <main_rel_path> <out.wasm> <out.did>
//        [<plan.json text>]
// Every .mo file under <source_root> (except in .git and .mops folders) is placed in the compiler's virtual
// file system at its path relative to <source_root>, so the output never depends on where the checkout lives.
// The plan is {"packages": [{"name", "dir", "virtual"}]}: every .mo file under `dir` is written at
// `virtual/<relative path>` and `mo:<name>` maps to `virtual` -- a canonical path derived from the package's
// name and version (docs/build.md), never from where the package sits on disk. A bundled package (e.g. core)
// is loaded unless the plan provides one with the same name.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

// moc.js needs a deeper stack than Node's default on large apps (it exits with status 2 and no output);
// the stack size does not change the output. Re-run this file once with it, the same on host and sandbox.
const STACK = '--stack-size=2000';
if (!process.execArgv.includes(STACK)) {
  const { spawnSync } = require('child_process');
  const run = spawnSync(process.execPath, [STACK, __filename, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(run.status === null ? 1 : run.status);
}

const [toolchain, icWasm, root, mainRel, outWasm, outDid, planText] = process.argv.slice(2);
const plan = planText ? JSON.parse(planText) : { packages: [] };
const provided = new Set(plan.packages.map((p) => p.name));
const mo = require(toolchain);
const bundledDir = path.join(toolchain, 'packages', 'latest');
for (const file of fs.readdirSync(bundledDir).filter((f) => f.endsWith('.json')).sort()) {
  if (!provided.has(file.slice(0, -5))) mo.loadPackage(require(path.join(bundledDir, file)));
}
mo.setPublicMetadata(['candid:service', 'candid:args']);

const SKIPPED = new Set(['.git', '.mops']);
function addSources(dir, base, prefix) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED.has(entry.name)) addSources(full, base, prefix);
    } else if (entry.isFile() && entry.name.endsWith('.mo')) {
      mo.write(prefix + path.relative(base, full).split(path.sep).join('/'), fs.readFileSync(full, 'utf8'));
    }
  }
}
addSources(root, root, '');
for (const pkg of plan.packages) {
  addSources(pkg.dir, pkg.dir, pkg.virtual + '/');
  mo.usePackage(pkg.name, pkg.virtual);
}

// Call the compiler directly: mo.wasm() drops the diagnostics' locations.
const result = mo.compiler.compileWasm('ic', mainRel);
const errors = (result.diagnostics || []).filter((d) => d.severity === 1);
if (!result.code || errors.length > 0) {
  for (const d of errors) {
    const s = d.range.start;
    process.stderr.write(`${d.source}:${s.line + 1}:${s.character + 1}: error [${d.code}] ${d.message}\n`);
  }
  if (errors.length === 0) process.stderr.write(`${mainRel}: compile failed without diagnostics\n`);
  process.exit(1);
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'prometheus-recipe-'));
try {
  const raw = path.join(work, 'raw.wasm');
  const shrunk = path.join(work, 'shrunk.wasm');
  fs.writeFileSync(raw, result.code.wasm);
  fs.writeFileSync(outDid, result.code.candid);
  const icWasmRun = (args, what) => {
    try {
      execFileSync(icWasm, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      process.stderr.write(`${what} failed: ${(e.stderr || e.message || '').toString().trim()}\n`);
      process.exit(1);
    }
  };
  icWasmRun([raw, '-o', shrunk, 'shrink'], 'ic-wasm shrink');
  icWasmRun([shrunk, '-o', outWasm, 'metadata', 'candid:service', '-f', outDid, '-v', 'public'], 'ic-wasm metadata');
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify({ moc: mo.version }) + '\n');
