"""Overfitting one image: stage 1 (noise + soft-round annealing), optional stage 2 with reset-to-best."""
from __future__ import annotations

import copy
import math

import torch
from tqdm.auto import tqdm

from .model import LotteryModel
from .presets import Preset

GRAD_CLIP = 10.0


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1 / mse) if mse > 0 else 100.0


def loss_terms(model: LotteryModel, target: torch.Tensor, lmbda: float, **forward_args):
    image, rate = model(**forward_args)
    mse = torch.mean((image - target) ** 2)
    bpp = rate / (model.height * model.width)
    return mse + lmbda * bpp, mse, bpp


def _param_groups(model: LotteryModel, lr: float, score_lr: float):
    scores = {id(p) for p in model.scores}
    rest = [p for p in model.parameters() if id(p) not in scores]
    return [{"params": rest, "lr": lr}, {"params": list(model.scores), "lr": score_lr}]


def train(model: LotteryModel, target: torch.Tensor, lmbda: float, preset: Preset,
          steps: int | None = None, progress: bool = True) -> dict:
    """Train in place; returns the final hard-rounded training estimates."""
    steps = preset.steps if steps is None else steps
    opt = torch.optim.Adam(_param_groups(model, preset.lr, preset.score_lr))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    bar = tqdm(range(steps), desc="stage 1", disable=not progress, dynamic_ncols=True, mininterval=0.5)
    for step in bar:
        frac = step / max(steps - 1, 1)
        loss, mse, bpp = loss_terms(model, target, lmbda, mode="noise",
                                    temperature=0.3 - 0.2 * frac, noise_a=2.0 - frac)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        sched.step()
        if step % preset.log_every == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{loss.item():.5f}", psnr=f"{psnr_from_mse(mse.item()):.2f}",
                            est_bpp=f"{bpp.item():.3f}")
    if preset.finetune_steps:
        finetune(model, target, lmbda, preset, progress)
    return evaluate(model, target, lmbda)


@torch.no_grad()
def evaluate(model: LotteryModel, target: torch.Tensor, lmbda: float) -> dict:
    loss, mse, bpp = loss_terms(model, target, lmbda, mode="hard")
    return {"loss": loss.item(), "psnr_float": psnr_from_mse(mse.item()), "latent_bpp_estimate": bpp.item()}


def finetune(model: LotteryModel, target: torch.Tensor, lmbda: float, preset: Preset,
             progress: bool = True, eval_every: int = 10) -> None:
    """Straight-through rounding at a low rate, C3-style: keep the best hard-rounded state."""
    opt = torch.optim.Adam(_param_groups(model, preset.finetune_lr, preset.finetune_lr))
    best = evaluate(model, target, lmbda)["loss"]
    best_state = copy.deepcopy(model.state_dict())
    bar = tqdm(range(preset.finetune_steps), desc="stage 2", disable=not progress, dynamic_ncols=True)
    for step in bar:
        loss, _, _ = loss_terms(model, target, lmbda, mode="ste")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        if step % eval_every == eval_every - 1:
            current = evaluate(model, target, lmbda)["loss"]
            if current < best:
                best, best_state = current, copy.deepcopy(model.state_dict())
            bar.set_postfix(best_loss=f"{best:.5f}")
    model.load_state_dict(best_state)
