"""PyTorch reference modules for sap-harness's networks, with the same parameter names.

Run with the project's venv (scripts/setup.sh creates it):

    .venv/bin/python tests/golden/reference.py            # rewrites tests/golden/golden.safetensors
    .venv/bin/python tests/golden/reference.py load CKPT INPUT OUT
        # loads a checkpoint written by sap-harness with load_state_dict(strict=True) and
        # writes the logits of INPUT (safetensors, key "input") to OUT (key "logits")

Weights and inputs of the golden file come from integer formulas that the Rust test
(tests/golden.rs) repeats exactly, so only the expected outputs are stored.
"""
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

CIFAR10_MEAN = [0.4914 * 255.0, 0.4822 * 255.0, 0.4465 * 255.0]
CIFAR10_STD = [0.2470 * 255.0, 0.2435 * 255.0, 0.2616 * 255.0]


class NatureCnn(nn.Module):
    def __init__(self, actions):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 32, 8, stride=4)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2)
        self.conv3 = nn.Conv2d(64, 64, 3, stride=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 512)
        self.fc2 = nn.Linear(512, actions)

    def forward(self, x):
        x = x.float() / 255.0
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class BasicBlock(nn.Module):
    def __init__(self, inp, out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.stride = stride
        self.pad = (out - inp) // 2

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        if self.stride != 1 or self.pad != 0:
            # Option A (He et al. 2016): subsample, pad the new channels with zeros.
            x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(h + x)


class ResNet20(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        width = 16
        for stage, planes in enumerate([16, 32, 64]):
            blocks = []
            for b in range(3):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(BasicBlock(width, planes, stride))
                width = planes
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, classes)
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        x = (x.float() - self.mean) / self.std
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.linear(h.mean(dim=(2, 3)))


def formula_value(k, i):
    """Value k of tensor i (in sorted name order), in [-1, 1): exact in f64 on every platform."""
    return ((k * 7919 + i * 104729) % 2000) / 1000.0 - 1.0


def formula_state(module):
    """Deterministic weights: He-scaled for weights, small for biases, positive variances."""
    state = {}
    for i, (name, t) in enumerate(sorted(module.state_dict().items())):
        if t.dtype == torch.int64:
            state[name] = torch.full_like(t, 3)
            continue
        u = torch.tensor([formula_value(k, i) for k in range(t.numel())], dtype=torch.float64)
        u = u.view(t.shape)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight" and t.dim() > 1:
            fan_in = t.numel() // t.shape[0]
            v = u * math.sqrt(6.0 / fan_in)
        elif leaf == "weight":  # batch-norm scale
            v = 1.0 + 0.25 * u
        elif leaf == "running_var":
            v = 1.0 + 0.5 * u * u
        else:  # biases, batch-norm shifts, running means
            v = 0.1 * u
        state[name] = v.to(torch.float32)
    return state


def formula_input(shape):
    n = math.prod(shape)
    return torch.tensor([(k * 31 + 17) % 256 for k in range(n)], dtype=torch.float32).view(shape)


def golden():
    out = {}
    for name, module, shape, labels in [
        ("resnet20", ResNet20(10), (2, 3, 32, 32), [3, 7]),
        ("nature_cnn", NatureCnn(6), (1, 4, 84, 84), [4]),
    ]:
        module.load_state_dict(formula_state(module), strict=True)
        module.eval()
        x = formula_input(shape).requires_grad_(True)
        logits = module(x)
        loss = F.cross_entropy(logits, torch.tensor(labels), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        out[f"{name}.logits"] = logits.detach().contiguous()
        out[f"{name}.grad"] = grad.contiguous()
        for key, t in sorted(module.state_dict().items()):
            out[f"{name}.shape.{key}"] = torch.tensor(list(t.shape), dtype=torch.int64)
    save_file(out, "tests/golden/golden.safetensors", metadata={"torch": torch.__version__})
    print(f"wrote tests/golden/golden.safetensors with torch {torch.__version__}")


def load_and_run(ckpt, inp, out):
    state = load_file(ckpt)
    module = ResNet20(10) if "layer1.0.conv1.weight" in state else NatureCnn(state["fc2.bias"].numel())
    module.load_state_dict(state, strict=True)
    module.eval()
    with torch.no_grad():
        logits = module(load_file(inp)["input"])
    save_file({"logits": logits.contiguous()}, out)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if len(sys.argv) == 5 and sys.argv[1] == "load":
        load_and_run(*sys.argv[2:])
    else:
        golden()
