# CTranslate2 engine. usage: ct2run.py RUN_TAG QUANT[,QUANT...] ; runs stop modes "callback" and "cut" per quant
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctranslate2
from common import BATCH, MAX_NEW, WORK, cut_stop, prompts
from tokenizers import Tokenizer

tag, quants = sys.argv[1], sys.argv[2].split(",")
modes = sys.argv[3].split(",") if len(sys.argv) > 3 else ["callback", "cut"]
tok = Tokenizer.from_file(os.path.join(WORK, "hfmodel/tokenizer.json"))
P = prompts()
ids = [tok.encode(p, add_special_tokens=False).ids for p in P]
start = [[tok.id_to_token(i) for i in x] for x in ids]
EOS = 2  # <|im_end|>, generation_config eos_token_id
for q in quants:
    if q not in ctranslate2.get_supported_compute_types("cpu"):
        print(
            f"ct2_{q}: compute type not supported on this CPU by this wheel: {sorted(ctranslate2.get_supported_compute_types('cpu'))}",  # noqa: E501
            flush=True,
        )
        continue
    t0 = time.perf_counter()
    gen = ctranslate2.Generator(f"{WORK}/ct2_{q}", device="cpu", compute_type=q, inter_threads=1, intra_threads=2)
    load = time.perf_counter() - t0
    for mode in modes:
        kw = dict(
            max_length=MAX_NEW, sampling_topk=1, include_prompt_in_result=False, end_token=[EOS], max_batch_size=BATCH
        )
        if mode == "callback":
            tails = {}

            def cb(
                step,
            ):  # stop this batch index once the decoded tail contains "Q:" (byte-level BPE keeps ASCII as is)
                s = tails.get(step.batch_id, "") + step.token
                tails[step.batch_id] = s[-16:]
                return "Q:" in tails[step.batch_id]

            kw["callback"] = cb
        gen.generate_batch(start[:1], **{**kw, "max_length": 8})  # warm-up
        tails = {}
        t0 = time.perf_counter()
        res = gen.generate_batch(start, **kw)
        g = time.perf_counter() - t0
        out_ids = [r.sequences_ids[0] for r in res]
        texts, ntoks, useful = [], [], []
        for o in out_ids:
            o = [t for t in o if t != EOS]
            text, hit = cut_stop(tok.decode(o, skip_special_tokens=True))
            texts.append(text)
            ntoks.append(len(o))
            # tokens up to and including the one completing "Q:" (what cotbridge counts)
            u = len(o)
            if hit:
                for k in range(1, len(o) + 1):
                    if "Q:" in tok.decode(o[:k], skip_special_tokens=True):
                        u = k
                        break
            useful.append(u)
        name = f"ct2_{q}_{mode}"
        info = dict(
            engine=name,
            run=tag,
            load_s=load,
            gen_s=g,
            tokens=sum(ntoks),
            useful_tokens=sum(useful),
            tok_per_s=sum(ntoks) / g,
            useful_tok_per_s=sum(useful) / g,
            per_tokens=ntoks,
            texts=texts,
            ct2=ctranslate2.__version__,
            compute_type=q,
            stop_mode=mode,
        )
        print(
            f"{name} run={tag} load={load:.2f}s gen={g:.2f}s decoded={sum(ntoks)} useful={sum(useful)} tok/s={sum(ntoks) / g:.1f} useful tok/s={sum(useful) / g:.1f}",  # noqa: E501
            flush=True,
        )
        json.dump(info, open(f"{WORK}/out/{name}_{tag}.json", "w"), indent=1)
    del gen
