// llama.cpp's own view of a GGUF file, through the llama.cpp that node-llama-cpp ships:
//   perplexity as llama-perplexity computes it (text tokenized by llama.cpp, BOS prepended
//   when the model asks for it, chunks of --ctx tokens whose first token becomes BOS when
//   the model adds one, only the second half of each chunk scored), or
//   --greedy PROMPT: the argmax continuation of --n tokens.
// Prints one JSON object. Usage:
//   node llamacpp_eval.mjs MODEL.gguf --text FILE [--ctx 512] [--chunks N] [--threads 2] [--base BASE.gguf]
// With --base, also KL(base ‖ model) and top-1 agreement over the scored positions, both models
// run by llama.cpp (as llama-perplexity --kl-divergence does).
//   node llamacpp_eval.mjs MODEL.gguf --greedy "Once upon a time" [--n 32]
import { readFileSync } from "node:fs";
import { getLlama } from "node-llama-cpp";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const modelPath = args[0];
const ctx = Number(opt("--ctx", 512)), threads = Number(opt("--threads", 2));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: Math.max(ctx, 256), batchSize: Math.max(ctx, 256), threads });
const seq = context.getSequence();
const baseModel = opt("--base", null) ? await llama.loadModel({ modelPath: opt("--base"), gpuLayers: 0 }) : null;
const baseContext = baseModel ? await baseModel.createContext({ contextSize: Math.max(ctx, 256), batchSize: Math.max(ctx, 256), threads }) : null;
const baseSeq = baseContext ? baseContext.getSequence() : null;
const bos = model.tokens.bos;
const addBos = model.tokens.shouldPrependBosToken && bos !== null && bos !== undefined;
const tokenize = (text) => (addBos ? [bos] : []).concat(model.tokenize(text, false));

function argmax(logits) {
  let best = -1, bestV = -Infinity;
  for (const [tok, v] of logits) if (v > bestV) { bestV = v; best = tok; }
  return best;
}

if (opt("--greedy", null) !== null) {
  const n = Number(opt("--n", 32));
  let input = tokenize(opt("--greedy", ""));
  const out = [];
  await seq.clearHistory();
  for (let i = 0; i < n; i++) {
    const items = input.map((t, k) => (k === input.length - 1 ? [t, { generateNext: { logits: true } }] : t));
    const res = await seq.controlledEvaluate(items);
    const next = argmax(res[items.length - 1].next.logits);
    out.push(next);
    input = [next];
  }
  console.log(JSON.stringify({ model: modelPath, prompt_tokens: tokenize(opt("--greedy", "")), tokens: out,
    text: model.detokenize(out) }));
} else {
  const tokens = tokenize(readFileSync(opt("--text"), "utf8"));
  const nChunks = Math.min(Number(opt("--chunks", 1e9)), Math.floor(tokens.length / ctx));
  const first = Math.floor(ctx / 2);
  let nll = 0, count = 0, kld = 0, agree = 0;
  const logSoftmax = (logits) => {
    let mx = -Infinity;
    for (const v of logits.values()) mx = Math.max(mx, v);
    let sum = 0;
    for (const v of logits.values()) sum += Math.exp(v - mx);
    return Math.log(sum) + mx;
  };
  for (let c = 0; c < nChunks; c++) {
    const chunk = tokens.slice(c * ctx, (c + 1) * ctx);
    if (addBos) chunk[0] = bos;
    const items = chunk.map((t, j) => (j >= first && j < ctx - 1 ? [t, { generateNext: { logits: true } }] : t));
    await seq.clearHistory();
    const res = await seq.controlledEvaluate(items);
    let baseRes = null;
    if (baseSeq) {
      await baseSeq.clearHistory();
      baseRes = await baseSeq.controlledEvaluate(items);
    }
    for (let j = first; j < ctx - 1; j++) {
      const q = res[j].next.logits, lseQ = logSoftmax(q);
      nll += lseQ - q.get(chunk[j + 1]);
      count++;
      if (baseRes) {
        const b = baseRes[j].next.logits, lseB = logSoftmax(b);
        let bestQ = -1, bestQv = -Infinity, bestB = -1, bestBv = -Infinity;
        for (const [tok, bv] of b) {
          const lb = bv - lseB, qv = q.get(tok);
          kld += Math.exp(lb) * (lb - (qv - lseQ));
          if (bv > bestBv) { bestBv = bv; bestB = tok; }
          if (qv > bestQv) { bestQv = qv; bestQ = tok; }
        }
        agree += bestQ === bestB ? 1 : 0;
      }
    }
  }
  const out = { model: modelPath, ctx, chunks: nChunks, n_tokens: tokens.length, scored: count, ppl: Math.exp(nll / count) };
  if (baseSeq) Object.assign(out, { base: opt("--base"), kld: kld / count, top1: agree / count });
  console.log(JSON.stringify(out));
}
await context.dispose();
await model.dispose();
if (baseModel) {
  await baseContext.dispose();
  await baseModel.dispose();
}
