// The reproducible build recipe, whole: moc.js (+ mo:core, public candid:service/args) -> ic-wasm shrink
// -> ic-wasm metadata candid:service (public), in that order. The host (`make build`) and the verifier's
// sandbox run this same file.
// Usage: node compile.js <motoko_pkg_dir> <ic_wasm_binary> <source_root> <main_rel_path> <out.wasm> <out.did>
// Every .mo file under <source_root> is placed in the compiler's virtual file system at its path relative
// to <source_root>, so the output never depends on where the checkout lives on the host.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const [toolchain, icWasm, root, mainRel, outWasm, outDid] = process.argv.slice(2);
const mo = require(toolchain);
mo.loadPackage(require(path.join(toolchain, 'packages', 'latest', 'core.json')));
mo.setPublicMetadata(['candid:service', 'candid:args']);

function addSources(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) addSources(full);
    else if (entry.isFile() && entry.name.endsWith('.mo')) {
      mo.write(path.relative(root, full).split(path.sep).join('/'), fs.readFileSync(full, 'utf8'));
    }
  }
}
addSources(root);

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
