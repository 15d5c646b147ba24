# llama.cpp via llama-cpp-python on the Q4_1 GGUF. usage: llamarun.py RUN_TAG MODE  (MODE: seq | batched)
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_cpp
import numpy as np
from common import BATCH, GGUF, MAX_NEW, WORK, cut_stop, prompts
from llama_cpp import Llama
from tokenizers import Tokenizer

tag, mode = sys.argv[1], sys.argv[2]
NP = int(os.environ.get("NPROMPTS", 32))
tok = Tokenizer.from_file(os.path.join(WORK, "hfmodel/tokenizer.json"))
P = prompts(NP)
ids = [tok.encode(p, add_special_tokens=False).ids for p in P]  # same ids as cotbridge, no BOS
EOS = 2
# Workaround for the AMX crash (see results.md): load weights without extra buffer types (no AMX repack).
if os.environ.get("NO_EXTRA_BUFTS", "1") == "1":
    import llama_cpp.llama_cpp as _ll

    _orig = _ll.llama_model_default_params

    def _mp():
        p = _orig()
        p.use_extra_bufts = False
        return p

    _ll.llama_model_default_params = _mp
t0 = time.perf_counter()
llm = Llama(model_path=GGUF, n_ctx=4096, n_batch=512, n_threads=2, n_threads_batch=2, logits_all=False, verbose=False)
load = time.perf_counter() - t0
assert llm.tokenize(P[0].encode(), add_bos=False, special=False) == ids[0], "tokenizer mismatch"
texts, ntoks, useful = [], [], []
if mode == "seq":
    kw = dict(max_tokens=MAX_NEW, temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, stop=["Q:"])
    llm.create_completion(ids[0], **{**kw, "max_tokens": 8})  # warm-up
    t0 = time.perf_counter()
    for x in ids:
        r = llm.create_completion(x, **kw)
        texts.append(r["choices"][0]["text"])
        ntoks.append(r["usage"]["completion_tokens"])
    g = time.perf_counter() - t0
    useful = ntoks
else:
    # continuous batching with the low-level API: 16 sequences (seq_id 0..15) in one llama_batch per step
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = BATCH * 512
    cp.n_batch = 2048
    cp.n_ubatch = 512
    cp.n_seq_max = BATCH
    cp.n_threads = 2
    cp.n_threads_batch = 2
    cp.kv_unified = False
    ctx = llama_cpp.llama_init_from_model(llm.model, cp)
    mem = llama_cpp.llama_get_memory(ctx)
    nv = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(llm.model))
    batch = llama_cpp.llama_batch_init(2048, 0, 1)

    def run(jobs, max_new):
        out = {j: [] for j in jobs}
        pending = list(jobs)
        slots = {}  # slot -> [job, pos, last_token]
        t0 = time.perf_counter()
        while pending or slots:
            n = 0
            rows = []
            free = [s for s in range(BATCH) if s not in slots]
            for s in free:  # prefill new prompts into free slots (whole prompt in the same batch)
                if not pending:
                    break
                j = pending.pop(0)
                llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
                for k, t in enumerate(ids[j]):
                    batch.token[n] = t
                    batch.pos[n] = k
                    batch.n_seq_id[n] = 1
                    batch.seq_id[n][0] = s
                    batch.logits[n] = k == len(ids[j]) - 1
                    n += 1
                slots[s] = [j, len(ids[j]), None]
                rows.append((s, n - 1))
            for s, st in slots.items():
                if st[2] is None or any(s == r[0] for r in rows):
                    continue
                batch.token[n] = st[2]
                batch.pos[n] = st[1]
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = s
                batch.logits[n] = True
                st[1] += 1
                rows.append((s, n))
                n += 1
            batch.n_tokens = n
            rc = llama_cpp.llama_decode(ctx, batch)
            assert rc == 0, rc
            for s, i in rows:
                lg = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(nv,))
                t = int(lg.argmax())
                j = slots[s][0]
                if t == EOS:
                    del slots[s]
                    continue
                out[j].append(t)
                slots[s][2] = t
                if len(out[j]) >= max_new or "Q:" in tok.decode(out[j][-8:]):
                    del slots[s]
        return out, time.perf_counter() - t0

    run([0], 8)  # warm-up
    out, g = run(list(range(len(ids))), MAX_NEW)
    for j in range(len(ids)):
        text, hit = cut_stop(tok.decode(out[j], skip_special_tokens=True))
        texts.append(text)
        ntoks.append(len(out[j]))
    useful = ntoks
name = f"llamacpp_{mode}"
info = dict(
    engine=name,
    run=tag,
    load_s=load,
    gen_s=g,
    tokens=sum(ntoks),
    useful_tokens=sum(useful),
    tok_per_s=sum(ntoks) / g,
    per_tokens=ntoks,
    texts=texts,
    llama_cpp_python=llama_cpp.__version__,
    system_info=llama_cpp.llama_print_system_info().decode(),
    use_extra_bufts=os.environ.get("NO_EXTRA_BUFTS", "1") != "1",
)
print(f"{name} run={tag} load={load:.2f}s gen={g:.2f}s tokens={sum(ntoks)} tok/s={sum(ntoks) / g:.1f}", flush=True)
json.dump(
    info, open(f"{WORK}/out/{name}_{tag}.json" if NP == 32 else f"{WORK}/out/{name}_{tag}_n{NP}.json", "w"), indent=1
)
