# Reference: cotbridge HFBackend, default (bf16 slot decoding) and dtype=float32. Run with the repo's .venv python
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
from common import BATCH, GGUF_DIR, MAX_NEW, WORK, prompts

from cotbridge.backends.base import Request
from cotbridge.backends.hf import HFBackend

tag = sys.argv[1]
P = prompts()
res = {}
for name, kw in [("cotbridge_default", {}), ("cotbridge_fp32", {"dtype": "float32"})]:
    t0 = time.perf_counter()
    b = HFBackend(GGUF_DIR, batch_size=BATCH, **kw)
    load = time.perf_counter() - t0
    b.generate([Request(prompt=P[0], max_tokens=8, stop=["Q:"])], progress=False)  # warm-up
    t0 = time.perf_counter()
    out = b.generate([Request(prompt=p, max_tokens=MAX_NEW, stop=["Q:"]) for p in P], progress=False)
    gen = time.perf_counter() - t0
    texts = [o[0].text for o in out]
    toks = [o[0].completion_tokens for o in out]
    info = dict(
        engine=name,
        run=tag,
        load_s=load,
        gen_s=gen,
        tokens=sum(toks),
        tok_per_s=sum(toks) / gen,
        per_tokens=toks,
        finish=[o[0].finish_reason for o in out],
        texts=texts,
        dtype=str(b.model.dtype),
        decoding=b.decoding,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    print(
        f"{name} run={tag} load={load:.1f}s gen={gen:.2f}s tokens={sum(toks)} tok/s={sum(toks) / gen:.1f} dtype={b.model.dtype} decoding={b.decoding}",  # noqa: E501
        flush=True,
    )
    json.dump(info, open(f"{WORK}/out/{name}_{tag}.json", "w"), indent=1)
    del b
