#!/usr/bin/env python3
"""Traces of ale-py's ALE for `sap conformance`: the reference side of the Atari conformance check.

For every game and seed it loads the ROM with ``random_seed = seed`` and sticky actions off,
then plays ``frames`` emulator frames of a fixed action sequence and writes one line per frame:
the first 16 hex digits of the MD5 of the screen (ALE palette indices, 210 x 160), the
reward, the lives and whether the game is over. The game is reset at game over and once,
unconditionally, after half the frames. `sap conformance` plays the same calls on the ALE
it emulates with and compares the two files line by line; `src/env/conformance.rs` holds
the same definition on the Rust side.

The action sequence: every 4th frame a new action is drawn from the game's minimal action
set, index ``splitmix64() % len(actions)``, from a SplitMix64 generator whose state starts
at ``seed * 0x9E3779B97F4A7C15 + 0x243F6A8885A308D3`` (mod 2^64).

Usage: ale_trace.py ROM_DIR OUT_DIR FRAMES SEED[,SEED...] ROM_ID [ROM_ID ...]
writes OUT_DIR/<rom_id>-s<seed>.txt, or a file holding one line ``error <message>`` when
ale-py cannot play the game.
"""

import hashlib
import os
import sys

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


class SplitMix64:
    def __init__(self, seed):
        self.state = (seed * GOLDEN + 0x243F6A8885A308D3) & MASK

    def next(self):
        self.state = (self.state + GOLDEN) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def trace(ale_py, rom_path, seed, frames):
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(rom_path)
    actions = list(ale.getMinimalActionSet())
    lines = ["actions " + " ".join(str(a.value) for a in actions)]
    rng = SplitMix64(seed)
    action = actions[0]
    for t in range(frames):
        if t % 4 == 0:
            action = actions[rng.next() % len(actions)]
        reward = ale.act(action)
        screen = hashlib.md5(ale.getScreen().tobytes()).hexdigest()[:16]
        over = ale.game_over()
        lines.append(f"{screen} {int(reward)} {ale.lives()} {int(over)}")
        if over or t + 1 == frames // 2:
            ale.reset_game()
    return lines


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    rom_dir, out_dir, frames, seeds = sys.argv[1:5]
    import ale_py

    frames = int(frames)
    seeds = [int(s) for s in seeds.split(",")]
    os.makedirs(out_dir, exist_ok=True)
    for rom_id in sys.argv[5:]:
        rom_path = os.path.join(rom_dir, rom_id + ".bin")
        for seed in seeds:
            try:
                lines = trace(ale_py, rom_path, seed, frames)
            except Exception as e:  # reported per game, the other games go on
                lines = [f"error {type(e).__name__}: {e}".replace("\n", " ")]
            with open(os.path.join(out_dir, f"{rom_id}-s{seed}.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
