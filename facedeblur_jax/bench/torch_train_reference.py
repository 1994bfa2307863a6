"""One training step of each phase in PyTorch, degradation included: the benchmark's baseline.

The same *work* as ``facedeblur_jax.training.step`` (not bit-identical results), on one
device, for ``python -m facedeblur_jax.bench.throughput --mode train``:

1. Degradation on the device, vectorised over the batch (``degrade_batch``), following
   ``facedeblur_jax/degrade``: a random similarity per sample (``affine_grid`` +
   ``grid_sample``: bilinear for images, nearest for labels, border fill = the JAX
   ``fill_mode="nearest"``), a Boracchi & Foi camera-shake kernel per sample — the
   ``num_steps`` random walk is a Python loop over time on batched complex tensors (each
   step is a handful of kernel launches, like XLA's while loop in the JAX step), with every
   random number drawn up front — rasterised by bilinear splatting on the
   ``canvas × canvas`` grid (a batched ``wyᵀ @ wx``), the per-sample blur as one grouped
   ``conv2d`` (``groups = B·C``) after reflect padding, Gaussian noise and clipping.
2. The phase's forward pass (``torch_reference.py`` nets, channels_last), its losses
   with the phase's weights (multi-scale L1, structural, parsing cross-entropy, VGG
   perceptual, non-saturating adversarial; reductions as ``facedeblur_jax/training/losses.py``),
   backward into the trained nets only (frozen nets have ``requires_grad = False``; D's
   parameters are frozen while the generator's adversarial term backpropagates through it,
   as the JAX step's ``stop_gradient``), D's own loss and backward when D trains, and one
   Adam step per trained net with the phase's learning rate (``fused=True`` on CUDA).
   P's BatchNorm runs in training mode exactly when the phase trains P.
   A phase whose P parses clear faces (``parsing_input = "clear"``) only augments and runs
   P alone on the sharp face, as the JAX step.

``compile=True`` wraps the generator's and D's loss functions (forward + losses; their
backward is compiled by AOTAutograd) in ``torch.compile(dynamic=False)``; degradation and
the optimiser stay eager (a 2000-step Python loop would unroll into an enormous graph).
``dtype="bf16"`` runs forward and losses under ``torch.autocast(bfloat16)``; degradation,
parameters and optimiser states stay float32, as in JAX.

Not done here (negligible work, or a host sync): the NaN/Inf skip and the metrics.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facedeblur_jax.bench import torch_reference as tr

KEY_PARTS = (2, 3, 4, 5, 6, 7, 8, 9)  # facedeblur_jax.training.losses.KEY_PARTS
VGG_FACE_MEAN_RGB = (129.186279296875, 104.76238250732422, 93.59396362304688)
_VGG_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
_EPS = 1e-12


@functools.cache
def _const(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A small constant tensor, made once per device: ``torch.tensor(list, device=cuda)``
    copies from pageable host memory and synchronises the stream, which would stall the
    pipelined steps being timed."""
    return torch.tensor(values, device=device)


# --------------------------------------------------------------------------------------
# Degradation (facedeblur_jax/degrade), batched
# --------------------------------------------------------------------------------------


def trajectories_from_noise(
    params_u: torch.Tensor,
    shake_u: torch.Tensor,
    angle_u: torch.Tensor,
    normals: torch.Tensor,
    anxiety: torch.Tensor,
    max_total_length: float,
) -> torch.Tensor:
    """``kernels.trajectory_from_noise`` for a batch of walks: ``f32[B, T, 2]`` (x, y).

    Args: the random numbers of ``kernels.TrajectoryNoise`` with a leading batch axis
    (``params_u [B, 4]``, ``shake_u``/``angle_u [B, T-1]``, ``normals [B, T-1, 2]``) and
    ``anxiety [B]``. Every term that does not depend on the carry is computed for all
    steps before the loop over time.
    """
    batch, steps = shake_u.shape
    step = max_total_length / steps
    centripetal = 0.7 * params_u[:, 0]
    gaussian_term = 10.0 * params_u[:, 1]
    freq_big_shakes = 0.2 * params_u[:, 2]
    v0 = torch.polar(torch.ones_like(params_u[:, 3]), 2 * math.pi * params_u[:, 3])
    v = torch.where(anxiety > 0, v0 * anxiety, v0 * step)
    shake = (shake_u < (freq_big_shakes * anxiety)[:, None]).float()
    # next_dir = 2·v·exp(i(π + U − 0.5)) on a shake, else 0: v += rot·v, rot precomputed.
    rot = torch.polar(2.0 * shake, math.pi + (angle_u - 0.5))
    noise = torch.complex(normals[..., 0], normals[..., 1])
    gauss = (anxiety * gaussian_term * step)[:, None] * noise
    pull = (anxiety * centripetal * step).to(torch.complex64)
    x = torch.zeros(batch, dtype=torch.complex64, device=shake_u.device)
    xs = torch.empty(batch, steps + 1, dtype=torch.complex64, device=shake_u.device)
    xs[:, 0] = x
    for t in range(steps):
        v = v + rot[:, t] * v + gauss[:, t] - pull * x
        v = v * (step / v.abs().clamp_min(_EPS))
        x = x + v
        xs[:, t + 1] = x
    return torch.view_as_real(xs)


def sample_trajectories(
    gen: torch.Generator,
    batch: int,
    num_steps: int,
    anxiety: float | None,
    max_total_length: float,
    device: torch.device,
) -> torch.Tensor:
    """``createTrajectory.m`` for ``batch`` walks at once: ``f32[B, num_steps, 2]``."""
    kw = dict(generator=gen, device=device)
    params_u = torch.rand(batch, 4, **kw)
    shake_u = torch.rand(batch, num_steps - 1, **kw)
    angle_u = torch.rand(batch, num_steps - 1, **kw)
    normals = torch.randn(batch, num_steps - 1, 2, **kw)
    if anxiety is None:  # B&F's default 0.1·U per trajectory
        anx = 0.1 * torch.rand(batch, **kw)
    else:
        anx = torch.full((batch,), float(anxiety), device=device)
    return trajectories_from_noise(params_u, shake_u, angle_u, normals, anx, max_total_length)


def rasterize(
    traj: torch.Tensor,
    sizes: torch.Tensor,
    canvas: int,
    center: str = "bbox",
    offset_u: torch.Tensor | None = None,
) -> torch.Tensor:
    """``kernels.rasterize`` batched: ``f32[B, T, 2]``, ``i64[B]`` -> ``f32[B, c, c]``;
    ``center`` as ``degrade.center``, ``offset_u`` ``f32[B, 2]`` uniforms for "random"."""
    centre = (canvas - 1) / 2.0
    half = (sizes.float() - 1.0) / 2.0
    d = traj - traj.mean(dim=1, keepdim=True)
    d = d * (half / d.abs().amax(dim=(1, 2)).clamp_min(_EPS))[:, None, None]
    if center != "centroid":
        lo, hi = d.amin(dim=1, keepdim=True), d.amax(dim=1, keepdim=True)
        d = d - (lo + hi) / 2.0
        if center == "random":
            slack = (half[:, None, None] - (hi - lo) / 2.0).clamp_min(0.0)
            d = d + (2.0 * offset_u[:, None, :] - 1.0) * slack
    pos = centre + d
    lo, hi = (centre - half)[:, None, None], (centre + half)[:, None, None]
    pos = torch.minimum(torch.maximum(pos, lo), hi)
    grid = torch.arange(canvas, dtype=torch.float32, device=traj.device)
    wx = F.relu(1.0 - (pos[..., 0:1] - grid).abs())  # [B, T, c]
    wy = F.relu(1.0 - (pos[..., 1:2] - grid).abs())
    psf = torch.bmm(wy.transpose(1, 2), wx)  # [B, c(y), c(x)]
    return psf / psf.sum(dim=(1, 2), keepdim=True).clamp_min(_EPS)


def sample_kernels(gen: torch.Generator, batch: int, degrade_cfg, device) -> torch.Tensor:
    """``f32[B, canvas, canvas]`` kernels of random sizes from ``degrade_cfg.kernel_sizes``."""
    sizes = _const(tuple(int(k) for k in degrade_cfg.kernel_sizes), device)
    pick = torch.randint(len(sizes), (batch,), generator=gen, device=device)
    traj = sample_trajectories(
        gen,
        batch,
        int(degrade_cfg.trajectory_steps),
        None if degrade_cfg.anxiety is None else float(degrade_cfg.anxiety),
        float(degrade_cfg.trajectory_length),
        device,
    )
    center = str(degrade_cfg.center)
    offset_u = None
    if center == "random":
        offset_u = torch.rand((batch, 2), generator=gen, device=device)
    return rasterize(traj, sizes[pick], int(degrade_cfg.kernel_canvas), center, offset_u)


def random_affine(
    gen: torch.Generator,
    images: torch.Tensor,
    labels: torch.Tensor,
    scale_range: Sequence[float],
    max_shift: float,
    max_rotation_deg: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random similarity per sample about the centre: ``f32[B, 3, H, W]``,
    ``i64[B, H, W]``; bilinear images, nearest labels, border fill."""
    b, _, h, w = images.shape
    dev = images.device
    scale = torch.empty(b, device=dev).uniform_(*scale_range, generator=gen)
    shift = (torch.rand(b, 2, generator=gen, device=dev) * 2 - 1) * max_shift * 2  # normalised
    theta = torch.deg2rad((torch.rand(b, generator=gen, device=dev) * 2 - 1) * max_rotation_deg)
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    mat = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    offset = -torch.einsum("bij,bj->bi", mat, shift)
    grid = F.affine_grid(torch.cat([mat, offset[..., None]], -1), [b, 1, h, w], align_corners=True)
    warped = F.grid_sample(images, grid, "bilinear", "border", align_corners=True)
    lab = F.grid_sample(labels[:, None].float(), grid, "nearest", "border", align_corners=True)
    return warped, lab[:, 0].round().long()


def blur(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """True convolution of each image with its own kernel: reflect pad, one grouped conv."""
    b, c, h, w = images.shape
    k = kernels.shape[-1]
    r = k // 2
    padded = F.pad(images.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect")
    weight = kernels.flip(-1, -2).repeat_interleave(c, dim=0)[:, None]  # [B·C, 1, k, k]
    return F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w)


def degrade_batch(
    gen: torch.Generator,
    images_u8: torch.Tensor,
    labels_u8: torch.Tensor,
    degrade_cfg,
    kernel_pool: torch.Tensor | None = None,
    clear: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``uint8[B, H, W, 3]``, ``uint8[B, H, W]`` on the device -> ``(blurred, sharp)`` as
    ``f32[B, 3, H, W]`` channels_last and warped ``i64[B, H, W]`` labels.

    ``kernel_pool`` (``f32[N, c, c]`` on the device; ``degrade.kernel_pool_size = N``): each
    sample takes a uniformly drawn pool kernel instead of a fresh walk, as the JAX step.
    ``clear``: augmentation only, ``blurred`` is the sharp face (``augment_only``)."""
    sharp = (images_u8.permute(0, 3, 1, 2).float() / 255.0).contiguous()
    labels = labels_u8.long()
    if degrade_cfg.augment:
        sharp, labels = random_affine(
            gen,
            sharp,
            labels,
            tuple(degrade_cfg.scale_range),
            float(degrade_cfg.max_shift),
            float(degrade_cfg.max_rotation_deg),
        )
    if clear:
        sharp = sharp.contiguous(memory_format=torch.channels_last)
        return sharp, sharp, labels
    if kernel_pool is not None:
        index = torch.randint(
            kernel_pool.shape[0], (sharp.shape[0],), generator=gen, device=sharp.device
        )
        kernels = kernel_pool[index]
    else:
        kernels = sample_kernels(gen, sharp.shape[0], degrade_cfg, sharp.device)
    blurred = blur(sharp, kernels)
    noise = torch.randn(blurred.shape, generator=gen, device=blurred.device)
    blurred = (blurred + float(degrade_cfg.noise_sigma) * noise).clamp(0.0, 1.0)
    cl = torch.channels_last
    return blurred.contiguous(memory_format=cl), sharp.contiguous(memory_format=cl), labels


# --------------------------------------------------------------------------------------
# VGG-Face features and losses (facedeblur_jax/training/losses.py)
# --------------------------------------------------------------------------------------


class VGGFace(nn.Module):
    """``models.vgg.VGGFace``: the 13 VGG-16 convs; returns ``pool2`` and ``pool5`` features
    of ``f32[B, 3, H, W]`` RGB in [0, 1] (PyTorch's default init: for timing only)."""

    def __init__(self, layers: Sequence[str] = ("pool2", "pool5")):
        super().__init__()
        self.layers = tuple(layers)
        self.last_block = max(int(name[-1]) for name in self.layers)
        convs, c_in = [], 3
        for n, width in _VGG_BLOCKS[: self.last_block]:
            block = []
            for _ in range(n):
                block.append(nn.Conv2d(c_in, width, 3, padding=1))
                c_in = width
            convs.append(nn.ModuleList(block))
        self.blocks = nn.ModuleList(convs)
        self.register_buffer("mean", torch.tensor(VGG_FACE_MEAN_RGB).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images * 255.0 - self.mean
        out = {}
        for i, block in enumerate(self.blocks, start=1):
            for conv in block:
                x = F.relu(conv(x))
            x = F.max_pool2d(x, 2)
            if f"pool{i}" in self.layers:
                out[f"pool{i}"] = x.float()
        return out


def content_loss(predictions: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    total = target.new_zeros(())
    for pred in predictions:
        t = tr.downsample(target, target.shape[2] // pred.shape[2])
        total = total + (pred.float() - t).abs().sum(dim=(1, 2, 3)).mean()
    return total


def _batch_mean(per_image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    w = weights.float()
    return (per_image * w).sum() / w.sum().clamp_min(1.0)


def structural_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    labels: torch.Tensor,
    has_labels: torch.Tensor,
    parts: torch.Tensor,
    c: float = 1.0,
    adaptive: bool = True,
    min_area: float = 0.0,
) -> torch.Tensor:
    """``parts``: ``i64[P]`` label values of the key parts, on the labels' device;
    ``min_area``: the floor of A_k at full resolution (``losses.structural_loss``)."""
    factor = target.shape[2] // pred.shape[2]
    masks = tr.downsample((labels[:, None] == parts[None, :, None, None]).float(), factor)
    err = (pred.float() - tr.downsample(target, factor)).abs().sum(dim=1)  # [B, h, w]
    per_part = torch.einsum("bhw,bphw->bp", err, masks)
    if adaptive:
        area = masks.sum(dim=(2, 3))
        floor = max(float(min_area) / factor**2, 1e-6)
        per_part = per_part * torch.where(area > 0, c / area.clamp_min(floor), 0.0)
    return _batch_mean(per_part.sum(dim=1), has_labels)


def parsing_loss(logits: torch.Tensor, labels: torch.Tensor, has_labels: torch.Tensor):
    ce = F.cross_entropy(logits.float(), labels, reduction="none").sum(dim=(1, 2))
    return _batch_mean(ce, has_labels)


def perceptual_loss(vgg: nn.Module, pred: torch.Tensor, target: torch.Tensor, layers):
    both = vgg(torch.cat([pred, target], dim=0))
    b = pred.shape[0]
    total = pred.new_zeros((), dtype=torch.float32)
    for name in layers:
        f = both[name]
        total = total + (f[:b] - f[b:].detach()).abs().flatten(1).sum(dim=1).mean()
    return total


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits, target))


# --------------------------------------------------------------------------------------
# The train step
# --------------------------------------------------------------------------------------


def _net_of(name: str) -> str:
    return "fine" if name.startswith("fine") else name


class TorchTrainStep:
    """One phase's training step: ``step(images_u8, labels_u8, has_labels)``.

    Args:
      config: the full config (``model``, ``loss``, ``optim``, ``degrade``).
      phase: a ``facedeblur_jax.training.schedule.Phase`` (loss weights, trained nets, lr).
      model: ``torch_reference.FaceDeblurModel`` (trained in place).
      disc: ``torch_reference.Discriminator`` (used when the phase has L_adv).
      vgg: a :class:`VGGFace` when the phase has L_VGG, else ``None``.
      dtype: ``"fp32"`` or ``"bf16"`` (autocast).
      compile: ``torch.compile`` the loss functions.
      seed: the degradation generator's seed.
    """

    def __init__(
        self,
        config,
        phase,
        model,
        disc,
        vgg=None,
        *,
        dtype="fp32",
        compile=False,
        seed=0,
        kernel_pool: torch.Tensor | None = None,
    ):
        self.config, self.phase, self.model, self.disc, self.vgg = config, phase, model, disc, vgg
        pool_size = int(config.degrade.kernel_pool_size)
        if (kernel_pool is None) != (pool_size == 0) or (
            kernel_pool is not None and kernel_pool.shape[0] != pool_size
        ):
            raise ValueError(
                f"degrade.kernel_pool_size = {pool_size} needs a pool of that many kernels; "
                f"got {None if kernel_pool is None else tuple(kernel_pool.shape)}"
            )
        self.kernel_pool = kernel_pool
        w = phase.loss
        if w["vgg"] > 0 and vgg is None:
            raise ValueError(f"phase {phase.name!r} uses L_VGG but no VGG network was given")
        self.device = next(model.parameters()).device
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.parts = _const(KEY_PARTS, self.device)
        self.train_parsing = phase.trains("parsing") and bool(config.model.parsing_use_bn)
        nets = {name: getattr(model, name) for name in ("coarse", "parsing", *model.fine_names())}
        nets["disc"] = disc
        for name, net in nets.items():
            net.requires_grad_(phase.trains(_net_of(name)))
        if vgg is not None:
            vgg.requires_grad_(False)
        model.train()
        disc.train()
        fused = self.device.type == "cuda"
        o = config.optim
        self.optimizers = [
            torch.optim.Adam(
                net.parameters(),
                lr=phase.lr[_net_of(name)],
                betas=(o.b1, o.b2),
                eps=o.eps,
                fused=fused,
                foreach=None if fused else True,
            )
            for name, net in nets.items()
            if phase.trains(_net_of(name))
        ]
        self.autocast = torch.autocast(self.device.type, torch.bfloat16, enabled=dtype == "bf16")
        self.g_loss = self._generator_loss
        self.d_loss = self._disc_loss
        if compile:
            self.g_loss = torch.compile(self._generator_loss, dynamic=False)
            self.d_loss = torch.compile(self._disc_loss, dynamic=False)

    def _generator_loss(self, blurred, sharp, labels, has_labels):
        w, lcfg = self.phase.loss, self.config.loss
        if self.phase.parsing_clear:  # P alone on the clear face (``blurred`` is sharp)
            logits = self.model.parsing(blurred, train=self.train_parsing)
            return w["parsing"] * parsing_loss(logits, labels, has_labels), None
        out = self.model(blurred, upto=self.phase.upto, train_parsing=self.train_parsing)
        total = sharp.new_zeros((), dtype=torch.float32)
        if w["content_coarse"]:
            total = total + w["content_coarse"] * content_loss(out.coarse, sharp)
        if w["content_fine"]:
            total = total + w["content_fine"] * sum(content_loss(s, sharp) for s in out.fine)
        if w["structural"]:
            for stage in out.fine:
                for pred in stage:
                    total = total + w["structural"] * structural_loss(
                        pred,
                        sharp,
                        labels,
                        has_labels,
                        self.parts,
                        lcfg.structural_c,
                        lcfg.structural_adaptive,
                        float(lcfg.structural_min_area),
                    )
        if w["parsing"]:
            total = total + w["parsing"] * parsing_loss(out.parsing_logits, labels, has_labels)
        if w["vgg"]:
            total = total + w["vgg"] * perceptual_loss(
                self.vgg, out.y, sharp, tuple(lcfg.vgg_layers)
            )
        if w["adv"]:
            total = total + w["adv"] * _bce(self.disc(out.y), 1.0)
        return total, out.y

    def _disc_loss(self, real, fake):
        logits = self.disc(torch.cat([real, fake], dim=0))
        b = real.shape[0]
        return _bce(logits[:b], 1.0) + _bce(logits[b:], 0.0)

    def degrade(self, images_u8, labels_u8):
        return degrade_batch(
            self.gen,
            images_u8,
            labels_u8,
            self.config.degrade,
            self.kernel_pool,
            clear=self.phase.parsing_clear,
        )

    def step(self, images_u8, labels_u8, has_labels) -> torch.Tensor:
        """Degrade, forward, backward, Adam; returns the generator loss (not synced)."""
        blurred, sharp, labels = self.degrade(images_u8, labels_u8)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        trains_disc = self.phase.trains("disc")
        if trains_disc:
            self.disc.requires_grad_(False)  # L_adv reaches G only (JAX: stop_gradient)
        with self.autocast:
            total, y = self.g_loss(blurred, sharp, labels, has_labels)
        total.backward()
        if trains_disc:
            self.disc.requires_grad_(True)
            with self.autocast:
                d_loss = self.d_loss(sharp, y.detach())
            d_loss.backward()
        for opt in self.optimizers:
            opt.step()
        return total.detach()
