"""Training throughput of sgm's toy MNIST UNet (forward + backward + AdamW step, images/s), side by side in one run.

    .venv/bin/python benchmarks/bench_unet.py [--batches 64 512] [--steps 5] [--threads 2] [--no-compile]

Rows, each at every batch size:
  baseline    a faithful straightforward implementation of the same architecture, the way sgm's code reads:
              attention as explicit softmax(Q K^T) V einsums over (batch*heads), `rearrange(...).contiguous()` copies
              around the SpatialTransformer, GroupNorm through `x.float()` / `.type(x.dtype)`. Same modules, same
              state_dict (checked: it loads ours with strict=True and gives the same outputs).
  sgm_nb      sgm_nb.unet.UNetModel: attention through F.scaled_dot_product_attention, copy-free token reshapes.
  + channels_last, + bf16 autocast, + torch.compile: the same model in torch's fast modes.
On a GPU (when present) it also measures fp32 vs bf16 autocast, eager vs compiled, and reports model FLOPs per step and
the fraction of the GPU's peak. Prints one table with images/s (median over steps; the variants' steps are interleaved
round-robin so that the load of a shared machine hits them alike), the spread (max - min) / median, the ratio to the
baseline at the same batch size, and the same from each variant's fastest step ("best": on a busy shared machine, the
least disturbed measurement).
"""

import argparse
import datetime
import platform
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from sgm_nb.data import load_mnist5k, make_batch
from sgm_nb.unet import CrossAttention, GroupNorm32, SpatialTransformer, UNetModel

TOY = dict(
    in_channels=1,
    out_channels=1,
    model_channels=32,
    attention_resolutions=[],
    num_res_blocks=4,
    channel_mult=[1, 2, 2],
    num_head_channels=32,
    num_classes="sequential",
    adm_in_channels=128,
)

# dense peak throughput (FLOP/s) by GPU name and precision, from the vendors' datasheets (SXM parts)
GPU_PEAK = {
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
}


# ---- the faithful straightforward baseline: sgm's code as written, on the same modules -------------------------------
class NaiveGroupNorm32(nn.GroupNorm):
    "sgm's util.GroupNorm32: upcast, normalise, cast back."

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


class NaiveCrossAttention(CrossAttention):
    "The original LDM attention: (b h) n d tensors, explicit sim = QK^T * scale, softmax, sim V."

    def forward(self, x, context=None, mask=None):
        h = self.heads
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (
            t.reshape(t.shape[0], t.shape[1], h, -1).permute(0, 2, 1, 3).reshape(t.shape[0] * h, t.shape[1], -1)
            for t in (q, k, v)
        )  # rearrange 'b n (h d) -> (b h) n d'
        sim = torch.einsum("b i d, b j d -> b i j", q, k) * self.scale
        out = torch.einsum("b i j, b j d -> b i d", sim.softmax(dim=-1), v)
        b = x.shape[0]
        out = out.reshape(b, h, out.shape[1], -1).permute(0, 2, 1, 3).reshape(b, out.shape[1], -1)
        return self.to_out(out)


class NaiveSpatialTransformer(SpatialTransformer):
    "sgm's SpatialTransformer.forward: rearrange to tokens with .contiguous(), and back with .contiguous()."

    def forward(self, x, context=None):
        context = context if isinstance(context, list) else [context]
        b, c, h, w = x.shape
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, -1).contiguous()
        if self.use_linear:
            x = self.proj_in(x)
        for i, block in enumerate(self.transformer_blocks):
            x = block(x, context=context[i if len(context) > 1 else 0])
        if self.use_linear:
            x = self.proj_out(x)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in


def baseline_unet(**cfg) -> UNetModel:
    "The same UNet with the baseline's forward passes swapped in (parameters and keys untouched)."
    net = UNetModel(**cfg)
    swap = {
        CrossAttention: NaiveCrossAttention,
        GroupNorm32: NaiveGroupNorm32,
        SpatialTransformer: NaiveSpatialTransformer,
    }
    for m in net.modules():
        if type(m) in swap:
            m.__class__ = swap[type(m)]
    return net


# ---- measurement ---------------------------------------------------------------------------------------------------
def toy_batch(bs: int, device):
    "A training batch of the toy setup: noised digits, EDM c_noise, a 128-d class vector, the x0 target."
    images, labels = load_mnist5k()
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(images), (bs,), generator=g)
    x0 = make_batch(images[idx.numpy()])["jpg"]
    sigma = (torch.randn(bs, generator=g) * 1.2 - 1.2).exp()
    x = (x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=g)) / (
        sigma[:, None, None, None] ** 2 + 1
    ).sqrt()
    return [t.to(device) for t in (x, sigma.log() / 4, torch.randn(bs, 128, generator=g), x0)]


def make_step(net, opt, autocast_dtype, device):
    def step(x, t, y, target):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = F.mse_loss(net(x, t, y=y).float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def setup(variant: dict, bs: int, device):
    "Model, optimizer and batch of one variant, warmed up (compiled if asked); returns (step, args, warmup seconds)."
    torch.manual_seed(0)
    net = (baseline_unet if variant["impl"] == "baseline" else UNetModel)(**TOY).to(device)
    fmt = torch.channels_last if variant["cl"] else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x, t, y, target = toy_batch(bs, device)
    args = (x.contiguous(memory_format=fmt), t, y, target.contiguous(memory_format=fmt))
    step = make_step(net, opt, variant["dtype"], device)
    if variant["compile"]:
        step = torch.compile(step)
    t0 = time.perf_counter()
    for _ in range(2 if variant["compile"] or device.type == "cuda" else 1):
        step(*args)
    sync(device)
    return step, args, time.perf_counter() - t0


def measure(rows: list, bs: int, rounds: int, device) -> list:
    "Time `rounds` steps of every variant, interleaved round-robin, so that load on a shared machine hits all alike."
    setups = [setup(v, bs, device) for v in rows]
    times = [[] for _ in rows]
    for _ in range(rounds):
        for (step, args, _), ts in zip(setups, times):
            t0 = time.perf_counter()
            step(*args)
            sync(device)
            ts.append(time.perf_counter() - t0)
    out = []
    for (_, _, warm_s), ts in zip(setups, times):
        med = statistics.median(ts)
        out.append(
            {
                "img_s": bs / med,
                "best_img_s": bs / min(ts),
                "step_s": med,
                "spread": (max(ts) - min(ts)) / med,
                "warm_s": warm_s,
            }
        )
    return out


def train_flops_per_image() -> float:
    "FLOPs of one forward + backward of the toy UNet per image (torch's FlopCounterMode: matmuls and convs)."
    net = UNetModel(**TOY)
    x, t, y, target = toy_batch(8, torch.device("cpu"))
    with FlopCounterMode(display=False) as fc:
        F.mse_loss(net(x, t, y=y), target).backward()
    return fc.get_total_flops() / 8


def variants(device, do_compile: bool):
    V = lambda name, impl="sgm_nb", cl=False, dtype=None, comp=False: dict(
        name=name, impl=impl, cl=cl, dtype=dtype, compile=comp
    )
    if device.type == "cpu":
        rows = [
            V("baseline (sgm as written), fp32", "baseline"),
            V("baseline, fp32, channels_last", "baseline", cl=True),
            V("sgm_nb, fp32", "sgm_nb"),
            V("sgm_nb, fp32, channels_last", cl=True),
            V("sgm_nb, bf16 autocast, channels_last", cl=True, dtype=torch.bfloat16),
        ]
        if do_compile:
            rows.append(V("sgm_nb, fp32, channels_last, compiled", cl=True, comp=True))
        return rows
    rows = [
        V("baseline (sgm as written), fp32", "baseline"),
        V("baseline, bf16 autocast", "baseline", dtype=torch.bfloat16),
        V("sgm_nb, fp32", "sgm_nb"),
        V("sgm_nb, bf16 autocast, channels_last", cl=True, dtype=torch.bfloat16),
    ]
    if do_compile:
        rows += [
            V("sgm_nb, fp32, compiled", comp=True),
            V("sgm_nb, bf16 autocast, channels_last, compiled", cl=True, dtype=torch.bfloat16, comp=True),
        ]
    return rows


def check_equivalence():
    "The baseline loads sgm_nb's weights with strict=True and computes the same function (randomised weights)."
    torch.manual_seed(1)
    ours, base = UNetModel(**TOY), baseline_unet(**TOY)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    base.load_state_dict(ours.state_dict(), strict=True)
    x, t, y, _ = toy_batch(4, torch.device("cpu"))
    with torch.no_grad():
        a, b = ours(x, t, y=y), base(x, t, y=y)
    err = ((a - b).abs().max() / a.abs().max()).item()
    assert err < 1e-5, err
    return err


def main(batches=(64, 512), steps=5, threads=2, do_compile=True, compile_max_bs=None):
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flops = train_flops_per_image()
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}  torch {torch.__version__}  "
        f"{platform.processor() or platform.machine()}  "
        f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}  threads {torch.get_num_threads()}"
    )
    print(f"baseline vs sgm_nb outputs, same weights: max rel. difference {check_equivalence():.1e}")
    print(f"model FLOPs per image, forward + backward: {flops / 1e9:.2f} GFLOP")
    peak = next((v for k, v in GPU_PEAK.items() if device.type == "cuda" and k in torch.cuda.get_device_name()), None)
    print(
        f"{'variant':<48} {'batch':>5} {'img/s':>8} {'step s':>8} {'spread':>7} {'vs base':>8} {'best':>8} "
        f"{'vs base':>8} {'GFLOP/s':>8} {'% peak':>7} {'warmup s':>9}"
    )
    for bs in batches:
        rows = variants(device, do_compile and (compile_max_bs is None or bs <= compile_max_bs))
        results = measure(rows, bs, steps if bs <= 64 or device.type == "cuda" else max(3, steps // 2), device)
        base, base_best = results[0]["img_s"], results[0]["best_img_s"]
        for v, r in zip(rows, results):
            achieved = flops * r["img_s"]
            pk = peak and peak["bf16" if v["dtype"] is not None else "fp32"]
            print(
                f"{v['name']:<48} {bs:>5} {r['img_s']:>8.1f} {r['step_s']:>8.3f} {r['spread']:>6.0%} "
                f"{r['img_s'] / base:>7.2f}x {r['best_img_s']:>8.1f} {r['best_img_s'] / base_best:>7.2f}x "
                f"{achieved / 1e9:>8.1f} {(f'{achieved / pk:.1%}' if pk else '-'):>7} {r['warm_s']:>9.1f}",
                flush=True,
            )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--compile-max-batch", type=int, default=None, help="compile only at batch sizes up to this")
    a = ap.parse_args()
    main(a.batches, a.steps, a.threads, not a.no_compile, a.compile_max_batch)
