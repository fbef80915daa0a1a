// Runs a wasm32-wasip1 program (a reactor: `_initialize` is dropped, `_start` runs main) in
// Node's V8 with WASI; imports from "env" (Proxy-Wasm host calls the program never makes) are
// stubbed. Usage: node bench/wasi-run.mjs PROGRAM.wasm [ARG]
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
const wasi = new WASI({ version: 'preview1', args: ['program', ...process.argv.slice(3)], env: {} });
const wasm = await WebAssembly.compile(await readFile(process.argv[2]));
const imports = wasi.getImportObject();
imports.env = {};
for (const i of WebAssembly.Module.imports(wasm)) if (i.module === 'env') imports.env[i.name] = () => 0;
const instance = await WebAssembly.instantiate(wasm, imports);
const { _initialize, ...rest } = instance.exports;
wasi.start({ exports: { ...rest } });
