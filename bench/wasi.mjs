// Runs a program built for wasm32-wasip1 under Node.js's WASI, with the
// current folder as its working folder, so that it reads relative paths.
//
//   node bench/wasi.mjs PROGRAM.wasm [ARGUMENTS...]
//
// For example, the explorer's timing example as WebAssembly:
//   RUSTFLAGS="-C target-feature=+simd128" cargo build --release \
//     --example explorer_timing --target wasm32-wasip1 --target-dir target/wasi
//   node --cpu-prof bench/wasi.mjs \
//     target/wasi/wasm32-wasip1/release/examples/explorer_timing.wasm \
//     www/demo/base.safetensors www/demo/finetuned.safetensors 0.125

import { readFile } from 'node:fs/promises';
import process from 'node:process';
import { WASI } from 'node:wasi';

const [program, ...args] = process.argv.slice(2);
if (!program) {
  console.error('usage: node bench/wasi.mjs PROGRAM.wasm [ARGUMENTS...]');
  process.exit(2);
}
const wasi = new WASI({ version: 'preview1', args: [program, ...args], env: {}, preopens: { '.': process.cwd() }, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(program));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
