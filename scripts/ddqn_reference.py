"""The PyTorch reference of one Double DQN update, timed as `sap bench ddqn` times its learner.

Run by `sap bench ddqn` with the project's venv (scripts/setup.sh creates it):

    .venv/bin/python scripts/ddqn_reference.py --updates 100 --rounds 3 --threads 1

prints one line: updates/s (best round), torch's threads and version, separated by spaces.

The update is the one `src/rl/ddqn.rs` makes with the `dopamine-v5` defaults: the Nature CNN
(tests/golden/reference.py's) on uint8 observations [32, 4, 84, 84] scaled by 1/255 inside
the network, 6 actions, Adam (lr 6.25e-5, eps 1.5e-4, torch's default implementation for the
CPU), Huber loss; the online network's forward and backward on s, and the online and target
networks' forwards on s' without gradients, as PyTorch users write it (CleanRL, Dopamine's
PyTorch ports). Each update converts a fresh batch from numpy uint8 arrays, as a learner
sampling its replay buffer does. The batches are random: timing does not depend on them.
"""
import argparse
import copy
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden"))
import reference  # noqa: E402

BATCH = 32
ACTIONS = 6
GAMMA = 0.99


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    online = reference.NatureCnn(ACTIONS)
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(online.parameters(), lr=6.25e-5, eps=1.5e-4)
    rng = np.random.default_rng(0)
    shape = (BATCH, 4, 84, 84)
    batches = [
        (
            rng.integers(0, 256, shape, dtype=np.uint8),
            rng.integers(0, ACTIONS, BATCH),
            rng.integers(-1, 2, BATCH).astype(np.float32),
            rng.integers(0, 256, shape, dtype=np.uint8),
            (rng.random(BATCH) < 0.05).astype(np.float32),
        )
        for _ in range(4)
    ]

    def update(i):
        s, a, r, s2, d = (torch.from_numpy(v) for v in batches[i % len(batches)])
        with torch.no_grad():
            best = online(s2).argmax(1, keepdim=True)
            y = r + GAMMA * (1.0 - d) * target(s2).gather(1, best).squeeze(1)
        q = online(s).gather(1, a.unsqueeze(1)).squeeze(1)
        loss = F.huber_loss(q, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(5):  # warm-up
        update(i)
    best = 0.0
    for _ in range(args.rounds):
        start = time.perf_counter()
        for i in range(args.updates):
            update(i)
        best = max(best, args.updates / (time.perf_counter() - start))
    print(best, torch.get_num_threads(), torch.__version__, flush=True)


if __name__ == "__main__":
    main()
