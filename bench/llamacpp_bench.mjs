// llama.cpp's prompt and generation speed on a GGUF file, measured like llama-bench
// (pp: one batch of N prompt tokens; tg: N tokens decoded one at a time; warm-up, then
// repetitions, mean ± stdev), through the llama.cpp that node-llama-cpp ships prebuilt.
// Usage: node llamacpp_bench.mjs MODEL.gguf [--threads 2] [--prompt 512] [--gen 128] [--reps 5]
import { getLlama } from "node-llama-cpp";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const modelPath = args[0];
const threads = opt("--threads", 2), nPrompt = opt("--prompt", 512), nGen = opt("--gen", 128), reps = opt("--reps", 5);

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: nPrompt + nGen + 16, batchSize: nPrompt, threads });
const seq = context.getSequence();
const vocab = model.tokens.bos === undefined ? 1000 : 1000;
const promptTokens = Array.from({ length: nPrompt }, (_, i) => 3 + ((i * 7919) % vocab));

async function timePrompt() {
  await seq.clearHistory();
  const t0 = process.hrtime.bigint();
  await seq.evaluateWithoutGeneratingNewTokens(promptTokens);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
async function timeGen() {
  await seq.clearHistory();
  let token = promptTokens[0];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < nGen; i++) {
    await seq.evaluateWithoutGeneratingNewTokens([token]);
    token = promptTokens[(i + 1) % nPrompt];
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
const stats = (xs) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
  return { mean: m, stdev: sd };
};
await timePrompt();
await timeGen();  // warm-up
const pp = [], tg = [];
for (let r = 0; r < reps; r++) pp.push(nPrompt / (await timePrompt()));
for (let r = 0; r < reps; r++) tg.push(nGen / (await timeGen()));
const p = stats(pp), g = stats(tg);
console.log(JSON.stringify({ engine: "llama.cpp (node-llama-cpp 3.22.1)", model: modelPath, threads,
  prompt: nPrompt, gen: nGen, prompt_tps: p.mean, prompt_tps_stdev: p.stdev, gen_tps: g.mean, gen_tps_stdev: g.stdev }));
await context.dispose();
await model.dispose();
