"""The released CVPR'18 MatConvNet model: parameter layout and forward graph, from the code.

Source: github.com/joanshen0508/Deep-Semantic-Face-Deblurring, commit aea7fe5 (2020-07-09).
Line numbers below are of ``DL_deblur_net18.m`` unless another file is named.

Files and variables. ``main_deblur18.m`` l.1-2 ``load('net_G_P_S_F.mat')`` and
``load('net_P_P_S_F.mat')`` and then uses the variables ``net_G`` and ``net_P`` (l.10), so the
files hold one variable each, named ``net_G`` / ``net_P`` (``savemodel.m`` l.40
``save('P-P-S-F-GAN.mat','net_P')`` and, commented out, l.11
``save('G-P-S-F-GAN.mat','net_G')``). Each is a 1×N MATLAB struct array indexed ``net_X(1,k)``:

* ``net_G``: 1×33, fields ``w``, ``b`` (``savemodel.m`` l.5-9, commented out there; l.129
  reads the transposed-convolution filter of entry 17 from ``.w``/``.b`` as well).
* ``net_P``: 1×12, fields in MATLAB creation order ``w, b, bw, bb, bm`` (entries 1-6,
  ``savemodel.m`` l.17-23) then ``upw, upb`` (entries 7-11 also set ``w b bw bb bm``, l.26-34);
  entry 12 sets only ``w, b`` (l.37-38). A struct array shares its fields, so the unset ones
  are ``[]`` (0×0 double). ``bm`` (the BatchNorm moments) is stored but not read by the
  released forward pass (see ``reference.py``).

Shapes are MatConvNet's: ``vl_nnconv`` filters H×W×Cin×Cout (``vl_nnconv.m`` l.12-16);
``vl_nnconvt`` filters H×W×Cout×Cin ("Filter k is given by elements F(:,:,k,:) ... FD must
be the same as the input depth D", ``vl_nnconvt.m`` l.11-16); biases and BatchNorm vectors
C×1 and moments C×2 as ``dagnn.Conv``/``ConvTranspose``/``BatchNorm.initParams`` create them
(``+dagnn/Conv.m`` l.44, ``ConvTranspose.m`` l.52, ``BatchNorm.m`` l.46-48) and ``savemodel.m``
copies them unchanged. MATLAB drops trailing singleton dimensions (a H×W×C×1 filter is stored
H×W×C); ``as4d`` restores them.

Kernel sizes are not written in the code; they are inferred from the pads: every conv is
size-preserving (k = 2·pad + 1), which the residual sums (l.93 ...) and skip sums (l.49, 55,
61, 67) and the scale-1 concat (l.130) require at the 128-px input of l.4: net_P(1,3) is 5×5
(pad 2, l.25; a 3×3 filter would give 34 px there and 17 ≠ 16 at the sum of l.55), the other P
convs 3×3, G's first conv of each scale 11×11 (pad 5, l.81, l.133), the other G convs 5×5, the
transposed convs 4×4 (upsample 2, crop 1 gives H'' = 2(H-1) + 4 - 2 = 2H, ``vl_nnconvt.m``
l.63-64). The widths (channel counts) are nowhere in the code: ``infer_widths`` reads them.
"""

from __future__ import annotations

import dataclasses

G_FIELDS = ("w", "b")
P_FIELDS = ("w", "b", "bw", "bb", "bm", "upw", "upb")
N_G, N_P = 33, 12
BN_EPSILON = 1e-4  # every vl_nnbnorm call of l.16-71 that sets it ('epsilon',1.0000e-04)

# Inputs of the graph: blurImg = imresize(input, [128 128]) (l.4), blurImg0 = imresize(blurImg,
# [64 64]) (l.5); both H×W×3 single, [0, 1) after main_deblur18.m l.6-8 (divide by 256).
INPUTS = ("blurImg", "blurImg0")
OUTPUTS = {
    "logits": "de_convImg_parsing",  # l.74, P's last conv (no BN, no ReLU)
    "prior": "G_softImg_1",  # l.77, softmax over channels
    "half": "G_convImg_6",  # l.126, G's half-scale output (no ReLU)
    "full": "G_2convImg_6",  # l.178, returned by l.181 (no ReLU, no residual to the input)
}


@dataclasses.dataclass(frozen=True)
class Op:
    """One line of DL_deblur_net18.m: ``out = kind(ins...)`` using entry ``net(1,k)``."""

    kind: str  # conv | convt | bnorm | relu | pool | add | softmax | concat
    out: str
    ins: tuple[str, ...]
    line: int
    net: str = ""  # "G" or "P" for ops with parameters
    k: int = 0  # 1-based MATLAB index into the struct array
    fields: tuple[str, ...] = ()  # (filter, bias) or (mult, bias) field names
    pad: int = 0  # vl_nnconv 'pad' [p p p p] (convt: 'crop' [c c c c])
    up: int = 1  # vl_nnconvt 'upsample' [u u]


def _p_graph() -> tuple[Op, ...]:
    ops, prev = [], "blurImg"
    for s, (line, pad) in enumerate(
        zip((15, 20, 25, 30, 35, 40), (1, 1, 2, 1, 1, 1), strict=True), 1
    ):
        ops += [
            Op("conv", f"convImg_{s}", (prev,), line, "P", s, ("w", "b"), pad),
            Op("bnorm", f"batchImg_{s}", (f"convImg_{s}",), line + 1, "P", s, ("bw", "bb")),
            Op("relu", f"reluImg_{s}", (f"batchImg_{s}",), line + 2),
        ]
        if s < 6:
            ops.append(Op("pool", f"poolImng_{s}", (f"reluImg_{s}",), line + 3))
            prev = f"poolImng_{s}"
    prev = "reluImg_6"
    for t, line in enumerate((45, 51, 57, 63, 69), 1):
        k, relu = 6 + t, ("de_reluImg_5" if t == 5 else f"de_reluImng_{t}")
        ops += [
            Op("convt", f"de_deconv_{t}", (prev,), line, "P", k, ("upw", "upb"), 1, 2),
            Op("conv", f"de_convImg_{t}", (f"de_deconv_{t}",), line + 1, "P", k, ("w", "b"), 1),
            Op("bnorm", f"de_batchImg_{t}", (f"de_convImg_{t}",), line + 2, "P", k, ("bw", "bb")),
            Op("relu", relu, (f"de_batchImg_{t}",), line + 3),
        ]
        if t < 5:  # skip sum with the encoder's pre-pool ReLU output, no ReLU after it
            ops.append(Op("add", f"de_sumImg_{t}", (relu, f"reluImg_{6 - t}"), line + 4))
            prev = f"de_sumImg_{t}"
    ops.append(Op("conv", "de_convImg_parsing", ("de_reluImg_5",), 74, "P", 12, ("w", "b"), 1))
    return tuple(ops)


def _g_scale(first: int, k0: int, tag: str, names: tuple[str, ...], x: str) -> list[Op]:
    """16 convs of one scale: conv-ReLU ×3, 5 residual blocks, conv-ReLU ×2, conv."""
    c1, r1, c2, r2, c3, r3, c4, r4, c5, r5, c6 = names
    ops = [
        Op("conv", c1, (x,), first, "G", k0, ("w", "b"), 5),
        Op("relu", r1, (c1,), first + 1),
        Op("conv", c2, (r1,), first + 3, "G", k0 + 1, ("w", "b"), 2),
        Op("relu", r2, (c2,), first + 4),
        Op("conv", c3, (r2,), first + 6, "G", k0 + 2, ("w", "b"), 2),
        Op("relu", r3, (c3,), first + 7),
    ]
    # Block b: s_b = conv(relu(conv(relu(s_{b-1})))) + s_{b-1}, s_0 = r3. The identity path
    # carries the sum BEFORE its ReLU (l.99 adds G_res1_sunImg_1, not G_res1_reluImg_1_2).
    skip, x = r3, r3
    for b in range(1, 6):
        line, k = first + 9 + 6 * (b - 1), k0 + 1 + 2 * b
        pre = f"G_res{tag}_"
        ops += [
            Op("conv", f"{pre}convImg_{b}_1", (x,), line, "G", k, ("w", "b"), 2),
            Op("relu", f"{pre}reluImg_{b}_1", (f"{pre}convImg_{b}_1",), line + 1),
            Op(
                "conv",
                f"{pre}convImg_{b}_2",
                (f"{pre}reluImg_{b}_1",),
                line + 2,
                "G",
                k + 1,
                ("w", "b"),
                2,
            ),
            Op("add", f"{pre}sunImg_{b}", (f"{pre}convImg_{b}_2", skip), line + 3),
            Op("relu", f"{pre}reluImg_{b}_2", (f"{pre}sunImg_{b}",), line + 4),
        ]
        skip, x = f"{pre}sunImg_{b}", f"{pre}reluImg_{b}_2"
    last = first + 39
    ops += [
        Op("conv", c4, (x,), last, "G", k0 + 13, ("w", "b"), 2),
        Op("relu", r4, (c4,), last + 1),
        Op("conv", c5, (r4,), last + 3, "G", k0 + 14, ("w", "b"), 2),
        Op("relu", r5, (c5,), last + 4),
        Op("conv", c6, (r5,), last + 6, "G", k0 + 15, ("w", "b"), 2),
    ]
    return ops


def _g_graph() -> tuple[Op, ...]:
    s1 = ("G_convImg_1", "G_reluImg_1", "G_convImg_2", "G_reluImg_2", "G_convImg_3",
          "G_reluImg_3", "G_convImg_4", "G_reluImg_4", "G_convImg_5", "G_reluImg_5",
          "G_convImg_6")  # fmt: skip
    s2 = ("G_convImg2_1", "G_reluImg2_1", "G_convImg2_2", "G_reluImg2_2", "G_convImg2_3",
          "G_reluImg2_3", "G_2convImg_4", "G_2reluImg_4", "G_2convImg_5", "G_2reluImg_5",
          "G_2convImg_6")  # fmt: skip
    return (
        Op("softmax", "G_softImg_1", ("de_convImg_parsing",), 77),
        Op("pool", "G_poolImng_1", ("G_softImg_1",), 78),  # 2×2 max pool of the prior
        Op("concat", "G_concatImg_1", ("blurImg0", "G_poolImng_1"), 79),
        *_g_scale(81, 1, "1", s1, "G_concatImg_1"),
        Op("convt", "de_deconv", ("G_convImg_6",), 129, "G", 17, ("w", "b"), 1, 2),
        Op("concat", "G_concatImg_12", ("de_deconv", "blurImg"), 130),
        Op("concat", "G_concatImg_2", ("G_concatImg_12", "G_softImg_1"), 131),
        *_g_scale(133, 18, "2", s2, "G_concatImg_2"),
    )


P_GRAPH = _p_graph()
G_GRAPH = _g_graph()
GRAPH = P_GRAPH + G_GRAPH  # in the order of the .m file


@dataclasses.dataclass(frozen=True)
class PWidths:
    """Channel counts of net_P (not published; read them with ``infer_widths``)."""

    enc: tuple[int, int, int, int, int, int]  # Cout of net_P(1,1..6).w
    up: tuple[int, int, int, int, int]  # Cout of net_P(1,7..11).upw
    dec5: int  # Cout of net_P(1,11).w (entries 7-10 must match enc 5, 4, 3, 2: the sums)
    classes: int  # K = Cout of net_P(1,12).w


@dataclasses.dataclass(frozen=True)
class GWidths:
    """Channel counts of net_G; half_out/up_out/out are 3 if each scale outputs an image."""

    classes: int  # K, the prior's channels (= PWidths.classes)
    feat: int  # F = Cout of net_G(1,1..15).w and of net_G(1,18..32).w
    half_out: int = 3  # Cout of net_G(1,16).w
    up_out: int = 3  # Cout of net_G(1,17).w (transposed conv)
    out: int = 3  # Cout of net_G(1,33).w


def kernel_size(op: Op) -> int:
    """Inferred spatial size of op's filter (see the module docstring)."""
    return 4 if op.kind == "convt" else 2 * op.pad + 1


def p_param_shapes(pw: PWidths) -> dict[tuple[int, str], tuple[int, ...]]:
    """{(k, field): shape} for every non-empty field of net_P, as stored (4-D filters)."""
    c, u = pw.enc, pw.up
    shapes: dict[tuple[int, str], tuple[int, ...]] = {}
    cin = 3
    for k in range(1, 7):
        ks = 5 if k == 3 else 3
        shapes[(k, "w")] = (ks, ks, cin, c[k - 1])
        cin = c[k - 1]
    dec_out = (c[4], c[3], c[2], c[1], pw.dec5)  # sums with reluImg_5, _4, _3, _2 (l.49-67)
    for t in range(5):
        k = 7 + t
        shapes[(k, "upw")] = (4, 4, u[t], cin)  # H×W×Cout×Cin
        shapes[(k, "upb")] = (u[t], 1)
        shapes[(k, "w")] = (3, 3, u[t], dec_out[t])
        cin = dec_out[t]
    shapes[(12, "w")] = (3, 3, pw.dec5, pw.classes)
    for k in range(1, 13):
        cout = shapes[(k, "w")][3]
        shapes[(k, "b")] = (cout, 1)
        if k <= 11:
            shapes[(k, "bw")], shapes[(k, "bb")], shapes[(k, "bm")] = (
                (cout, 1),
                (cout, 1),
                (cout, 2),
            )
    return shapes


def g_param_shapes(gw: GWidths) -> dict[tuple[int, str], tuple[int, ...]]:
    """{(k, field): shape} for net_G, as stored (4-D filters)."""
    f, shapes = gw.feat, {}
    for k0, cin in ((1, 3 + gw.classes), (18, gw.up_out + 3 + gw.classes)):
        shapes[(k0, "w")] = (11, 11, cin, f)  # concat orders: l.79 and l.130-131
        for k in range(k0 + 1, k0 + 15):
            shapes[(k, "w")] = (5, 5, f, f)
    shapes[(16, "w")] = (5, 5, f, gw.half_out)
    shapes[(17, "w")] = (4, 4, gw.up_out, gw.half_out)  # vl_nnconvt: H×W×Cout×Cin
    shapes[(33, "w")] = (5, 5, f, gw.out)
    for k in range(1, 34):
        shapes[(k, "b")] = (shapes[(k, "w")][3] if k != 17 else gw.up_out, 1)
    return shapes


def as4d(shape) -> tuple[int, ...]:
    """Restore MATLAB's dropped trailing singleton dimensions of a filter."""
    shape = tuple(int(s) for s in shape)
    return shape + (1,) * (4 - len(shape))


def infer_widths(shape_of) -> tuple[GWidths, PWidths]:
    """Widths from stored shapes; ``shape_of(net, k, field)`` returns a stored shape."""
    p = lambda k, fld, d: as4d(shape_of("P", k, fld))[d]
    g = lambda k, d: as4d(shape_of("G", k, "w"))[d]
    pw = PWidths(
        enc=tuple(p(k, "w", 3) for k in range(1, 7)),
        up=tuple(p(k, "upw", 2) for k in range(7, 12)),
        dec5=p(11, "w", 3),
        classes=p(12, "w", 3),
    )
    gw = GWidths(pw.classes, g(1, 3), half_out=g(16, 3), up_out=g(17, 2), out=g(33, 3))
    return gw, pw


def propagate_shapes(inputs: dict[str, tuple[int, int, int, int]], shape_of) -> dict:
    """Shapes [B, H, W, C] of every named tensor from MatConvNet's documented size rules.

    conv: H'' = floor((H + 2·pad - FH) / 1) + 1 (``vl_nnconv.m`` l.73); convt:
    H'' = up·(H - 1) + FH - 2·crop (``vl_nnconvt.m`` l.63); pool 2×2 stride 2 pad 0:
    floor((H - 2) / 2) + 1 (``vl_nnpool.m`` l.42). Raises ValueError naming the line and
    entry on any channel or size mismatch.
    """
    shp = dict(inputs)
    for op in GRAPH:
        where = f"l.{op.line} ({op.out})" + (f" net_{op.net}(1,{op.k})" if op.net else "")
        ins = [shp[n] for n in op.ins]
        b, h, w, c = ins[0]
        if op.kind in ("conv", "convt"):
            fh, fw, d3, d4 = as4d(shape_of(op.net, op.k, op.fields[0]))
            cin, cout = (d3, d4) if op.kind == "conv" else (d4, d3)
            if cin != c:
                raise ValueError(f"{where}.{op.fields[0]}: filter takes {cin} channels, got {c}")
            nb = int(prod(shape_of(op.net, op.k, op.fields[1])))
            if nb != cout:
                raise ValueError(f"{where}.{op.fields[1]}: {nb} biases for {cout} filters")
            if op.kind == "conv":
                h, w = h + 2 * op.pad - fh + 1, w + 2 * op.pad - fw + 1
            else:
                h, w = op.up * (h - 1) + fh - 2 * op.pad, op.up * (w - 1) + fw - 2 * op.pad
            if h < 1 or w < 1:
                raise ValueError(f"{where}: filter larger than the padded input")
            shp[op.out] = (b, h, w, cout)
        elif op.kind == "bnorm":
            for fld in op.fields:
                if int(prod(shape_of(op.net, op.k, fld))) != c:
                    raise ValueError(f"{where}.{fld}: expected {c} values")
            shp[op.out] = (b, h, w, c)
        elif op.kind == "pool":
            shp[op.out] = (b, (h - 2) // 2 + 1, (w - 2) // 2 + 1, c)
        elif op.kind in ("relu", "softmax"):
            shp[op.out] = (b, h, w, c)
        elif op.kind == "add":
            if ins[1] != ins[0]:
                raise ValueError(f"{where}: sum of {ins[0]} and {ins[1]}")
            shp[op.out] = ins[0]
        elif op.kind == "concat":
            if any(s[:3] != (b, h, w) for s in ins):
                raise ValueError(f"{where}: concat of {ins}")
            shp[op.out] = (b, h, w, sum(s[3] for s in ins))
        else:
            raise ValueError(f"unknown op {op.kind}")
    return shp


def prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
