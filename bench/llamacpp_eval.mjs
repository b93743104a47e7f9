// llama.cpp's own view of a GGUF file, through the llama.cpp that node-llama-cpp ships:
//   perplexity as llama-perplexity computes it (text tokenized by llama.cpp, BOS prepended
//   when the model asks for it, chunks of --ctx tokens whose first token becomes BOS when
//   the model adds one, only the second half of each chunk scored), or
//   --greedy PROMPT: the argmax continuation of --n tokens.
// Prints one JSON object per model. Usage:
//   node llamacpp_eval.mjs MODEL.gguf [MODEL2.gguf ...] --text FILE [--ctx 512] [--chunks N] [--threads 2] [--base BASE.gguf]
// With --base, also KL(base ‖ model) and top-1 agreement over the scored positions, both models
// run by llama.cpp (as llama-perplexity --kl-divergence does). Several models share one
// evaluation of the base per chunk; the text is tokenized by the first model.
//   node llamacpp_eval.mjs MODEL.gguf --greedy "Once upon a time" [--n 32]
import { readFileSync } from "node:fs";
import { getLlama } from "node-llama-cpp";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const modelPaths = args.slice(0, Math.max(1, args.findIndex((a) => a.startsWith("--")) >>> 0));
const ctx = Number(opt("--ctx", 512)), threads = Number(opt("--threads", 2));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const contextOptions = { contextSize: Math.max(ctx, 256), batchSize: Math.max(ctx, 256), threads };
async function open(modelPath) {
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  const context = await model.createContext(contextOptions);
  return { path: modelPath, model, context, seq: context.getSequence() };
}
const runs = [];
for (const p of modelPaths) runs.push(await open(p));
const base = opt("--base", null) ? await open(opt("--base")) : null;
const model = runs[0].model, seq = runs[0].seq;
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
  console.log(JSON.stringify({ model: runs[0].path, prompt_tokens: tokenize(opt("--greedy", "")), tokens: out,
    text: model.detokenize(out) }));
} else {
  const tokens = tokenize(readFileSync(opt("--text"), "utf8"));
  const nChunks = Math.min(Number(opt("--chunks", 1e9)), Math.floor(tokens.length / ctx));
  const first = Math.floor(ctx / 2);
  for (const r of runs) Object.assign(r, { nll: 0, count: 0, kld: 0, agree: 0 });
  // Logits as a dense array (token id → logit) and their log-sum-exp.
  const dense = (logits) => {
    const a = new Float64Array(logits.size);
    let mx = -Infinity;
    for (const [tok, v] of logits) {
      if (tok >= a.length) throw new Error(`logit of token ${tok} outside a vocabulary of ${a.length}`);
      a[tok] = v;
      mx = Math.max(mx, v);
    }
    let sum = 0;
    for (let i = 0; i < a.length; i++) sum += Math.exp(a[i] - mx);
    return { a, lse: Math.log(sum) + mx };
  };
  const evaluate = async (seqOf, items) => {
    await seqOf.clearHistory();
    return await seqOf.controlledEvaluate(items);
  };
  for (let c = 0; c < nChunks; c++) {
    const chunk = tokens.slice(c * ctx, (c + 1) * ctx);
    if (addBos) chunk[0] = bos;
    const items = chunk.map((t, j) => (j >= first && j < ctx - 1 ? [t, { generateNext: { logits: true } }] : t));
    const baseLogits = [];
    if (base) {
      const res = await evaluate(base.seq, items);
      for (let j = first; j < ctx - 1; j++) baseLogits[j] = dense(res[j].next.logits);
    }
    for (const r of runs) {
      const res = await evaluate(r.seq, items);
      for (let j = first; j < ctx - 1; j++) {
        const q = dense(res[j].next.logits);
        r.nll += q.lse - q.a[chunk[j + 1]];
        r.count++;
        if (!base) continue;
        const b = baseLogits[j];
        let bestQ = 0, bestB = 0, kld = 0;
        for (let t = 0; t < b.a.length; t++) {
          const lb = b.a[t] - b.lse;
          kld += Math.exp(lb) * (lb - (q.a[t] - q.lse));
          if (b.a[t] > b.a[bestB]) bestB = t;
          if (q.a[t] > q.a[bestQ]) bestQ = t;
        }
        r.kld += kld;
        r.agree += bestQ === bestB ? 1 : 0;
      }
    }
  }
  for (const r of runs) {
    const out = { model: r.path, ctx, chunks: nChunks, n_tokens: tokens.length, scored: r.count, ppl: Math.exp(r.nll / r.count) };
    if (base) Object.assign(out, { base: base.path, kld: r.kld / r.count, top1: r.agree / r.count });
    console.log(JSON.stringify(out));
  }
}
for (const r of base ? runs.concat([base]) : runs) {
  await r.context.dispose();
  await r.model.dispose();
}
