"""How fast does a small ANIRA learn k-hop pointer chasing, per input format? (a plain loop, no Trainer)

    python experiments/depo_formats/measure.py --fmt token --pool 8 --n 8 --depth 6 --train 1 2 3 4 \
        --extra 5 6 --noans --queries 4 --curriculum 0.8 --batch 64 --steps 4000 --every 100

A self-contained DEPO-like generator (its own vocabulary, so formats can be compared without touching the
package): n nodes of a pool on a directed cycle, the edges in shuffled order as one token per edge
(`--fmt token`), as two node tokens (`pair`) or as `a > b ,` (`arrow`), then `--queries` queries
`<hop=k> x [<ans>] succ^k(x)`, all of one k. `--curriculum A` trains on k = 1 first and adds the next k once
held-out accuracy on the current ones reaches A. Prints held-out accuracy and mean depth per k every
`--every` steps. The logs beside this file are its output; README.md in the folder above lists the commands.
"""
import argparse, random, time
import torch
from modeling_anira import AniraConfig, AniraForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--pool", type=int, default=12)
p.add_argument("--n", type=int, default=8)
p.add_argument("--train", type=int, nargs="+", default=[1, 2, 3, 4])
p.add_argument("--extra", type=int, nargs="*", default=[5, 6])
p.add_argument("--fmt", default="token")  # token: one token per edge; pair: a b pairs; arrow: a > b ,
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--hidden", type=int, default=64)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--core", type=int, default=1)
p.add_argument("--prelude", type=int, default=1)
p.add_argument("--coda", type=int, default=1)
p.add_argument("--depth", type=int, default=8)
p.add_argument("--mode", default="fixed")
p.add_argument("--penalty", type=float, default=0.0)
p.add_argument("--penalty_from", type=int, default=0)
p.add_argument("--every", type=int, default=250)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--overrides", default="")
p.add_argument("--noans", action="store_true")
p.add_argument("--queries", type=int, default=1)
p.add_argument("--curriculum", type=float, default=0.0)
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(a.seed)
P = a.pool
PAD, BOS, EOS, ANS = 0, 1, 2, 3
HOP0 = 4            # hop markers 4..4+15
NODE0 = HOP0 + 16   # node tokens
ARROW, COMMA = NODE0 + P, NODE0 + P + 1
EDGE0 = NODE0 + P + 2
def edge_id(u, v):
    return EDGE0 + u * P + v
V = EDGE0 + P * P

def sample(k, rng):
    nodes = rng.sample(range(P), a.n)
    edges = [(nodes[i], nodes[(i + 1) % a.n]) for i in range(a.n)]
    rng.shuffle(edges)
    starts = rng.sample(range(a.n), a.queries)
    ids = [BOS]
    for u, v in edges:
        if a.fmt == "token": ids.append(edge_id(u, v))
        elif a.fmt == "pair": ids += [NODE0 + u, NODE0 + v]
        else: ids += [NODE0 + u, ARROW, NODE0 + v, COMMA]
    targets = []
    for s in starts:
        ids += [HOP0 + k - 1, NODE0 + nodes[s]] + ([] if a.noans else [ANS])
        targets.append(len(ids))
        ids.append(NODE0 + nodes[(s + k) % a.n])
    return ids + [EOS], targets

rng = random.Random(a.seed)
evrng = random.Random(12345)
test = {k: [sample(k, evrng) for _ in range(256)] for k in a.train + a.extra}

def batchify(items):
    L = max(len(x) for x, _ in items)
    ids = torch.full((len(items), L), PAD); lab = torch.full((len(items), L), -100); m = torch.zeros((len(items), L), dtype=torch.long)
    for i, (x, ts) in enumerate(items):
        ids[i, :len(x)] = torch.tensor(x); m[i, :len(x)] = 1
        for t in ts: lab[i, t] = x[t]
        lab[i, len(x) - 1] = x[-1]
    return ids, lab, m

cfg = AniraConfig(vocab_size=V, hidden_size=a.hidden, intermediate_size=2 * a.hidden, num_attention_heads=a.heads, head_dim=a.hidden // a.heads,
                  num_prelude_layers=a.prelude, num_core_layers=a.core, num_coda_layers=a.coda, max_depth=a.depth, depth_mode=a.mode,
                  compute_penalty=0.0, pad_token_id=0, bos_token_id=1, eos_token_id=2)
if a.overrides:
    cfg.update_from_string(a.overrides)
model = AniraForCausalLM(cfg)
print("params", sum(p.numel() for p in model.parameters()), flush=True)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)

@torch.no_grad()
def evaluate():
    model.eval(); res = {}
    for k, items in test.items():
        ids, lab, m = batchify(items)
        out = model(input_ids=ids, attention_mask=m)
        st = torch.tensor([s[-1] for _, s in items])
        pos = st - 1
        pred = out.logits[torch.arange(len(items)), pos].argmax(-1)
        gold = ids[torch.arange(len(items)), st]
        d = out.depths[torch.arange(len(items)), pos].float()
        res[k] = (round((pred == gold).float().mean().item(), 2), round(d.mean().item(), 2))
    model.train(); return res

t0 = time.time(); last_eval = None
for step in range(1, a.steps + 1):
    if a.curriculum > 0:
        acc = last_eval or {}
        allowed = [a.train[0]]
        for k in a.train[1:]:
            if acc.get(allowed[-1], (0,))[0] >= a.curriculum: allowed.append(k)
            else: break
    else:
        allowed = a.train
    items = [sample(rng.choice(allowed), rng) for _ in range(a.batch)]
    ids, lab, m = batchify(items)
    for g in opt.param_groups:
        g["lr"] = a.lr * min(1.0, step / 100)
    model.config.compute_penalty = a.penalty if step >= a.penalty_from else 0.0
    out = model(input_ids=ids, attention_mask=m, labels=lab)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); opt.zero_grad()
    if step % a.every == 0:
        last_eval = evaluate()
        print(f"{time.time()-t0:6.0f}s step {step} lm {out.lm_loss.item():.3f} {last_eval}", flush=True)
