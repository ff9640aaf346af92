"""SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"), batched per item.

Adam run in the eigenbasis of Shampoo's two Kronecker factors: for a weight gradient G (m x n),
L = EMA(G G^T) and R = EMA(G^T G); every ``precondition_every`` steps their eigenvectors Q_L, Q_R
are recomputed, and Adam's second moment lives in the rotated space Q_L^T G Q_R. Cool-chic 5
trains its networks this way (refreshing every 10 steps).

Why not a library's SOAP (pytorch-optimizer, heavyball): the batched trainer stacks B independent
items on a leading axis, and those would precondition that axis too, so items would share
statistics. Here every parameter is (B, d0, *rest), seen as B matrices d0 x prod(rest), each
with its own factors (batched ``eigh``), so an item trains the same alone or in a batch. A side
larger than ``max_dim``, and 1-D (per item) parameters, keep the identity basis: plain Adam.
"""
from __future__ import annotations

import torch


class BatchedSOAP(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-2, betas: tuple[float, float] = (0.95, 0.95),
                 shampoo_beta: float = 0.95, eps: float = 1e-8, precondition_every: int = 10, max_dim: int = 256):
        super().__init__(params, {"lr": lr, "betas": betas, "shampoo_beta": shampoo_beta, "eps": eps,
                                  "precondition_every": precondition_every, "max_dim": max_dim})

    @staticmethod
    def _sides(p: torch.Tensor, max_dim: int) -> tuple[bool, bool]:
        if p.dim() < 3:
            return False, False
        d0, d1 = p.shape[1], p[0, 0].numel()
        return 1 < d0 <= max_dim, 1 < d1 <= max_dim

    @staticmethod
    def _rotate(x: torch.Tensor, ql, qr, back: bool = False) -> torch.Tensor:
        """x (B, d0, d1) into the basis (Q_L^T x Q_R), or back (Q_L x Q_R^T)."""
        if ql is not None:
            x = torch.bmm(ql if back else ql.transpose(1, 2), x)
        if qr is not None:
            x = torch.bmm(x, qr.transpose(1, 2) if back else qr)
        return x

    @staticmethod
    def _eigenbasis(factor: torch.Tensor, old: torch.Tensor | None) -> torch.Tensor:
        d = factor.shape[-1]
        # A small ridge: the factors start rank-deficient (a few outer products).
        jitter = 1e-12 + 1e-6 * factor.diagonal(dim1=1, dim2=2).mean(dim=1, keepdim=True)[..., None]
        try:
            _, q = torch.linalg.eigh(factor.double() + jitter.double() * torch.eye(d, dtype=torch.float64,
                                                                                 device=factor.device))
        except RuntimeError:  # eigh did not converge: keep the basis we have
            return old if old is not None else torch.eye(d, device=factor.device).expand_as(factor).clone()
        return q.to(factor.dtype)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            sb, eps = group["shampoo_beta"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                left, right = self._sides(p, group["max_dim"])
                g = p.grad.reshape(p.shape[0], p.shape[1] if p.dim() > 1 else 1, -1)
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(g)
                    state["exp_avg_sq"] = torch.zeros_like(g)
                    state["L"] = torch.zeros(g.shape[0], g.shape[1], g.shape[1], device=g.device) if left else None
                    state["R"] = torch.zeros(g.shape[0], g.shape[2], g.shape[2], device=g.device) if right else None
                    state["QL"] = state["QR"] = None
                state["step"] += 1
                t = state["step"]
                if left:
                    state["L"].lerp_(torch.bmm(g, g.transpose(1, 2)), 1 - sb)
                if right:
                    state["R"].lerp_(torch.bmm(g.transpose(1, 2), g), 1 - sb)
                if (left or right) and (t == 1 or t % group["precondition_every"] == 0):
                    state["QL"] = self._eigenbasis(state["L"], state["QL"]) if left else None
                    state["QR"] = self._eigenbasis(state["R"], state["QR"]) if right else None
                ql, qr = state["QL"], state["QR"]
                # The first moment is kept in the parameter's own basis (no re-projection when the
                # basis moves); the second moment in the rotated one, where it is near-diagonal.
                state["exp_avg"].lerp_(g, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(gr := self._rotate(g, ql, qr), gr, value=1 - beta2)
                m_hat = self._rotate(state["exp_avg"], ql, qr) / (1 - beta1 ** t)
                v_hat = state["exp_avg_sq"] / (1 - beta2 ** t)
                update = self._rotate(m_hat / (v_hat.sqrt() + eps), ql, qr, back=True)
                p.add_(update.reshape(p.shape), alpha=-group["lr"])
        return loss
