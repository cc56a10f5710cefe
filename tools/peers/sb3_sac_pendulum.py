"""Stable-Baselines3 SAC on Pendulum-v1 with Keel's benchmark protocol.

Prints one line per 1000 env steps: env_step, wall seconds, 10-episode deterministic eval mean.
Sizes as SB3's defaults for SAC (2x256 actor and critic, batch 256, one update per step).
Run through tools/peers/sac_vs_sb3.sh, which creates the virtual environment.
"""
import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy


class EvalEvery(BaseCallback):
    def __init__(self, every, env, t0):
        super().__init__()
        self.every, self.env, self.t0 = every, env, t0

    def _on_step(self):
        if self.num_timesteps % self.every == 0:
            wall = time.perf_counter() - self.t0
            mean, std = evaluate_policy(self.model, self.env, n_eval_episodes=10, deterministic=True)
            print(f"sb3,{self.num_timesteps},{wall:.2f},{mean:.2f},{std:.2f}", flush=True)
        return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    env = gym.make("Pendulum-v1")
    eval_env = gym.make("Pendulum-v1")
    model = SAC("MlpPolicy", env, seed=a.seed, learning_starts=a.learning_starts, batch_size=256,
                policy_kwargs=dict(net_arch=[256, 256]), verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=a.steps, callback=EvalEvery(1000, eval_env, t0))


if __name__ == "__main__":
    main()
