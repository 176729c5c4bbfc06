"""The PyTorch reference of exact SAP-100, timed on the networks `sap bench defense` measures.

Run by `sap bench defense` with the project's venv (scripts/setup.sh creates it):

    .venv/bin/python scripts/sap_reference.py --rounds 3 --iterations 5 --threads 2

prints one line per network: name, batch, images/s of the dense forward pass and of the forward pass
with exact SAP-100 after every ReLU, best round kept, rounds alternating between the two
(as the Rust benchmark does), then torch's threads and version, separated by spaces. The SAP is the straightforward PyTorch form: per example,
r = n draws with torch.multinomial(p, r, replacement=True), the drawn units kept and rescaled
by 1 / -expm1(r log1p(-p)). The networks are tests/golden/reference.py's, with random
weights and pixels: timing does not depend on them.
"""
import argparse
import pathlib
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden"))
import reference  # noqa: E402

RELU = F.relu


def sap(h, frac=1.0):
    """Exact SAP on every example of h (post-ReLU, [batch, ...])."""
    b = h.shape[0]
    flat = h.reshape(b, -1)
    r = max(1, round(frac * flat.shape[1]))
    total = flat.sum(1, keepdim=True)
    p = flat / total.clamp_min(torch.finfo(flat.dtype).tiny)
    # multinomial refuses rows without mass; such a row stays zero whatever is drawn.
    draws = torch.where(total > 0, p, torch.ones_like(p))
    idx = torch.multinomial(draws, r, replacement=True)
    kept = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True) & (flat > 0)
    q = -torch.expm1(r * torch.log1p(-p))
    out = torch.where(kept, flat / q.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.view_as(h)


def defended_relu(x, *args, **kwargs):
    return sap(RELU(x, *args, **kwargs))


def measure(model, x, rounds, iterations):
    best = {"dense": 0.0, "sap": 0.0}
    with torch.no_grad():
        for mode in best:  # warm-up
            F.relu = defended_relu if mode == "sap" else RELU
            model(x)
        for _ in range(rounds):
            for mode in best:
                F.relu = defended_relu if mode == "sap" else RELU
                start = time.perf_counter()
                for _ in range(iterations):
                    model(x).sum().item()
                ips = x.shape[0] * iterations / (time.perf_counter() - start)
                best[mode] = max(best[mode], ips)
    F.relu = RELU
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = [
        ("resnet20", reference.ResNet20(10).eval(), (128, 3, 32, 32)),
        ("nature-cnn", reference.NatureCnn(6).eval(), (32, 4, 84, 84)),
    ]
    for name, model, shape in nets:
        x = torch.randint(0, 256, shape).float()
        best = measure(model, x, args.rounds, args.iterations)
        print(name, shape[0], best["dense"], best["sap"], torch.get_num_threads(),
              torch.__version__, flush=True)


if __name__ == "__main__":
    main()
