"""Tests of the NumPy reference of the released CVPR'18 code (layout, ops, imresize, files)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import numpy as np
import pytest
import scipy.io

from . import layout, reference, synthetic_mat
from .imresize import contributions, cubic, imresize

RNG = np.random.default_rng(1234)

# --------------------------------------------------------------------------- conv / convt


@pytest.mark.parametrize(
    ("h", "fh", "s", "c"), [(5, 4, 2, 1), (4, 4, 2, 1), (7, 3, 1, 1), (6, 5, 3, 2), (3, 4, 2, 0)]
)
def test_conv_transpose_is_the_adjoint_of_the_strided_conv(h, fh, s, c):
    f = RNG.standard_normal((fh, fh + 1, 3, 2))  # [FH, FW, K, D]; not square, not symmetric
    x = RNG.standard_normal((2, h, h + 1, 2))  # D channels
    y = reference.conv_transpose(x, f, upsample=s, crop=c)  # K channels
    v = RNG.standard_normal(y.shape)
    av = reference.conv_strided(v, f, stride=s, pad=c)  # conv maps K -> D
    assert av.shape == x.shape
    np.testing.assert_allclose(np.vdot(av, x), np.vdot(v, y), rtol=1e-12)


def _convt_closed_form(x, f, s, crop):
    """doc/blocks.tex eq. (e:convt), 1-based, x and f zero outside their support."""
    h, w, d = x.shape
    fh, fw, k, _ = f.shape
    ho, wo = s * (h - 1) + fh - 2 * crop, s * (w - 1) + fw - 2 * crop
    q = lambda a: (a - 1) // s
    m = lambda a: (a - 1) % s
    xa = lambda i, j: x[i - 1, j - 1] if 1 <= i <= h and 1 <= j <= w else np.zeros(d)
    y = np.zeros((ho, wo, k))
    for i2 in range(1, ho + 1):
        for j2 in range(1, wo + 1):
            for i1 in range(fh + 1):
                for j1 in range(fw + 1):
                    u, v = 1 + s * i1 + m(i2 + crop), 1 + s * j1 + m(j2 + crop)
                    if u <= fh and v <= fw:
                        y[i2 - 1, j2 - 1] += f[u - 1, v - 1] @ xa(
                            1 - i1 + q(i2 + crop), 1 - j1 + q(j2 + crop)
                        )
    return y


def test_conv_transpose_matches_the_matconvnet_manual_formula():
    f = RNG.standard_normal((4, 4, 3, 2))
    x = RNG.standard_normal((1, 4, 5, 2))
    got = reference.conv_transpose(x, f, upsample=2, crop=1)
    assert got.shape == (1, 8, 10, 3)  # 'upsample',[2 2],'crop',[1 1 1 1], 4×4: exactly 2×
    np.testing.assert_allclose(got[0], _convt_closed_form(x[0], f, 2, 1), atol=1e-12)
    flipped = reference.conv_transpose(x, f[::-1, ::-1], upsample=2, crop=1)
    assert np.abs(flipped - got).max() > 0.1  # the formula tells a flip apart


def test_conv_is_correlation_and_convt_copies_the_filter_unflipped():
    f = RNG.standard_normal((3, 5, 1, 1))
    delta = np.zeros((1, 9, 9, 1))
    delta[0, 4, 4, 0] = 1.0
    y = reference.conv_strided(delta, f, pad=1)[0, :, :, 0]
    # y[i, j] = Σ f[u, v] x[i+u-1, j+v-1]  =>  y[4+1-u, 4+1-v] = f[u, v]
    for u in range(3):
        for v in range(5):
            if 0 <= 5 - v < y.shape[1]:
                assert y[5 - u, 5 - v] == f[u, v, 0, 0]
    x = np.zeros((1, 3, 3, 1))
    x[0, 1, 1, 0] = 1.0
    z = reference.conv_transpose(x, f, upsample=2, crop=0)[0, :, :, 0]
    np.testing.assert_array_equal(z[2:5, 2:7], f[:, :, 0, 0])


def test_bnorm_modes():
    x = RNG.standard_normal((3, 4, 5, 2)) * 3 + 1
    g, b = np.array([[1.5], [0.5]]), np.array([[0.1], [-0.2]])
    per = reference.bnorm(x, g, b, "per_image")
    one = reference.bnorm(x[1:2], g, b, "per_image")
    np.testing.assert_allclose(per[1:2], one, atol=1e-12)
    mu = x[1].mean(axis=(0, 1))
    sigma = np.sqrt(x[1].var(axis=(0, 1)) + 1e-4)  # biased variance, as vl_nnbnorm
    mom = reference.bnorm(x[1:2], g, b, "moments", np.stack([mu, sigma], axis=1))
    np.testing.assert_allclose(mom, one, atol=1e-12)
    pooled = reference.bnorm(x, g, b, "batch")
    assert np.abs(pooled[1] - per[1]).max() > 1e-3
    np.testing.assert_allclose(reference.bnorm(x[:1], g, b, "batch"), per[:1], atol=1e-12)


# --------------------------------------------------------------------------- imresize

HALF_TAPS = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256.0


def test_half_scale_taps_derived_by_hand():
    # antialiased kernel 0.5·cubic(0.5·d) at d = ±0.5, ±1.5, ±2.5, ±3.5: cubic(±0.25) etc.
    by_hand = 0.5 * np.array([cubic(t) for t in (1.75, 1.25, 0.75, 0.25, 0.25, 0.75, 1.25, 1.75)])
    np.testing.assert_allclose(by_hand, HALF_TAPS, atol=0)  # sums to 1 already
    w, idx = contributions(128, 64, 0.5)
    assert w.shape == (64, 8)
    np.testing.assert_allclose(w, np.broadcast_to(HALF_TAPS, (64, 8)), atol=1e-15)
    np.testing.assert_array_equal(idx[10], np.arange(17, 25))  # 2j-3 .. 2j+4, 0-based
    # mirror rule aux = [1:n, n:-1:1]: 1-based -2, -1, 0 -> 3, 2, 1 (0-based -3.. -> 2, 1, 0)
    # and 129, 130, 131 -> 128, 127, 126
    np.testing.assert_array_equal(idx[0], [2, 1, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(idx[63], [123, 124, 125, 126, 127, 127, 126, 125])


def test_imresize_ramp_constant_identity_and_size():
    ramp = np.tile(np.arange(32.0)[:, None], (1, 8))
    out = imresize(ramp, (16, 4))
    np.testing.assert_allclose(out[2:14, 0], 2 * np.arange(2, 14) + 0.5, atol=1e-12)
    # row 0 by hand: taps on rows 2,1,0,0,1,2,3,4 -> (-6-9+0+0+111+58-27-12)/256 = 115/256
    np.testing.assert_allclose(out[0, 0], 115 / 256, atol=1e-15)
    const = np.full((37, 23, 3), 7.25)
    for size in ((19, 12), (64, 64), (37, 23)):
        np.testing.assert_allclose(imresize(const, size), 7.25, atol=1e-12)
    img = RNG.random((16, 16, 3))
    np.testing.assert_allclose(imresize(img, (16, 16)), img, atol=1e-15)  # l.4 at 128 px
    assert imresize(RNG.random((37, 20)), scale=0.5).shape == (19, 10)  # ceil(scale * n)
    with pytest.raises(ValueError):
        imresize(img, (8, 8), border="reflect")


# MATLAB R2017b ground truth: xinntao/matlab_functions_verification (imresize_bicubic.m:
# imresize(im2double(imread('baboon.png')), 1/2, 'bicubic') written by imwrite), green
# channel. Input corners 20×20 of baboon.png (480×492) and the matching 8×8 output corners
# of baboon_down_x2_matlab.png (240×246): top-left rows/cols 0.., bottom-right input rows
# 460.. cols 472.., output rows 232.. cols 238.. (the real image borders are included).
_TL_IN = (
    "0606060606060606060606060606060606060606689632162a6a8650376a2a486969360b2a17292a686b324b2a"
    "4b4b86282848688687504817286951164b2a4b32482a6887272a6868966869691768a8482a878716322a2a8a96"
    "376a69569686878e314b504b68960b2a16162a96a868a8a78ea8868e8937482a164850321637482a86a56aa8c4"
    "c48aa8a84b8632162a4b6a482a6a6a2a4b18375196a8a7ac5087321616162a4b162a2a68682a2a686d3286aca8"
    "68a88e688919162a484b4b32168a8a5650a86a4b5068ac8a8787161668322a27162a86a869323228714ba78a6b"
    "a7572a686828192a48876d966a372a71326aa849688a384b962a160b2a96c4964b4b4b6b37284b6d4b86502a2a"
    "16161616374ba8a88a6a4b284b373229164b48562a1616066a86a76da8962a16326a494b172a5656682917162a"
    "68a7ac9686162a16486a373216686a689628174b376aa8a7964768502a322a374b488686714b2a172819374b96"
    "28489637484b482a682968713737483736485737493768536a164b2a2a56296a5737486d6a4887a8"
)
_TL_OUT = (
    "3b1725342123341550433e5f4d4e805e406e2a246d7588994b2643324b696195714e40283e443a6867997f3956"
    "25348c545b635f4a1d1c782d3e3f2f4f371359"
)
_BR_IN = (
    "57494e323849383838293649344e473436344939594e34383639343634394734564e59383929294e494e343939"
    "293429293439484e57474939293436574e3929293438363939515757586e4939292948584e3939363934364734"
    "5154575867584838293949574839392938364e3957675758676749393628494e49473438343949584e586e4e51"
    "594e5739364857473936363951584e585767484c6758474e3939494849474847394e584e5748395751594939395"
    "739394e51483439394e49344938293934484e392938483447493939394e48363438293648344e383638374e3938"
    "5738364e2839362836392951363929373951474e34473439472828321b3739394e3929483948573448373448292"
    "929293634473449495139364e4951343838342938341b39393438363429393958575847393939281b2837293738"
    "29484934475749574834392929282934283629482938384747395639514939382828281629273729383429294c3"
    "838393949393938291928282928472919280606060606060606060606060606060606060606"
)
_BR_OUT = (
    "333741565c614131363f51595858523b483d4b4c4142493f433e403a31303d3e473d3b3129313c42523c352a2c"
    "34363f4e403027293136341e211c1313171b12"
)


def _u8(hexstr, n):
    return np.frombuffer(bytes.fromhex(hexstr), np.uint8).reshape(n, n).astype(int)


@pytest.mark.parametrize(
    ("inp", "out", "crop"),
    [(_TL_IN, _TL_OUT, np.s_[0:8, 0:8]), (_BR_IN, _BR_OUT, np.s_[2:10, 2:10])],
    ids=["top_left", "bottom_right"],
)
def test_imresize_matches_matlab_r2017b_outputs(inp, out, crop):
    x, expected = _u8(inp, 20) / 255.0, _u8(out, 8)

    def as_written(**kw):  # imwrite of a double image: clip, ×255, round
        return np.floor(np.clip(imresize(x, scale=0.5, **kw)[crop], 0, 1) * 255 + 0.5)

    np.testing.assert_array_equal(as_written(), expected)
    # the defaults matter: without antialiasing, or clamping borders, MATLAB is not matched
    assert np.abs(as_written(antialiasing=False) - expected).max() >= 5
    assert np.abs(as_written(border="replicate") - expected).max() >= 3


# --------------------------------------------------------------------------- files + forward


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    return synthetic_mat.write_pair(tmp_path_factory.mktemp("cvpr18"))


@pytest.fixture(scope="module")
def small_params(small_pair):
    return reference.params_from_structs(*reference.load_nets(*small_pair))


def test_synthetic_files_have_the_released_layout(small_pair):
    g_path, p_path = small_pair
    assert (g_path.name, p_path.name) == ("net_G_P_S_F.mat", "net_P_P_S_F.mat")
    g = scipy.io.loadmat(g_path, squeeze_me=False, struct_as_record=True)["net_G"]
    p = scipy.io.loadmat(p_path, squeeze_me=False, struct_as_record=True)["net_P"]
    assert g.shape == (1, 33) and g.dtype.names == layout.G_FIELDS
    assert p.shape == (1, 12) and p.dtype.names == layout.P_FIELDS
    for net, spec in ((g, layout.g_param_shapes(synthetic_mat.SMALL_G)),
                      (p, layout.p_param_shapes(synthetic_mat.SMALL_P))):  # fmt: skip
        for k in range(1, net.shape[1] + 1):
            for field in net.dtype.names:
                value = net[field][0, k - 1]
                if (k, field) in spec:
                    assert value.shape == spec[(k, field)] and value.dtype == np.float32
                else:
                    assert value.shape == (0, 0), (k, field)  # MATLAB's []
    assert p["upw"][0, 6].shape == (4, 4, 4, 10)  # convt: H×W×Cout×Cin
    shape_of = lambda net, k, f: (g if net == "G" else p)[f][0, k - 1].shape
    assert layout.infer_widths(shape_of) == (synthetic_mat.SMALL_G, synthetic_mat.SMALL_P)


@pytest.fixture(scope="module")
def runs(small_params):
    x = RNG.random((4, 32, 32, 3))
    return (
        x,
        reference.forward(small_params, x),
        [reference.forward(small_params, x[i : i + 1]) for i in range(4)],
    )


def test_every_intermediate_has_the_layout_shape(small_params, runs):
    _, out, _ = runs
    expected = reference.check(small_params, (32, 32), 4)
    assert set(out["all"]) == set(expected)
    for name, arr in out["all"].items():
        assert arr.shape == expected[name], name
    assert out["logits"].shape == (4, 32, 32, 4) and out["prior"].shape == (4, 32, 32, 4)
    assert out["half"].shape == (4, 16, 16, 3) and out["full"].shape == (4, 32, 32, 3)
    np.testing.assert_allclose(out["prior"].sum(-1), 1.0, atol=1e-12)
    assert np.all(np.isfinite(out["full"])) and out["full"].std() > 1e-3


def test_batch_of_four_equals_four_single_images(small_params, runs):
    x, out, singles = runs
    for key in ("logits", "prior", "half", "full"):
        stacked = np.concatenate([s[key] for s in singles])
        np.testing.assert_allclose(out[key], stacked, rtol=1e-10, atol=1e-12)
    pooled = reference.forward(small_params, x, bn="batch")  # vl_nnbnorm on a stacked batch
    assert np.abs(pooled["logits"] - out["logits"]).max() > 1e-3
    one = reference.forward(small_params, x[:1], bn="batch")["full"]
    np.testing.assert_allclose(one, singles[0]["full"], atol=1e-12)


def test_reference_is_deterministic_and_runs_at_64_px(small_params):
    x = RNG.random((1, 64, 64, 3))
    a, b = reference.forward(small_params, x), reference.forward(small_params, x.copy())
    for key in ("logits", "prior", "half", "full"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["full"].shape == (1, 64, 64, 3)
    m = reference.forward(small_params, x, bn="moments")  # the stored bm of the backup script
    assert np.abs(m["logits"] - a["logits"]).max() > 1e-3


def test_outputs_depend_on_concat_order_and_filter_orientation(small_params):
    x = RNG.random((1, 32, 32, 3))
    base = reference.forward(small_params, x)
    k = synthetic_mat.SMALL_G.classes
    changed = [
        # G(1) sees [blurImg0, pooled prior] (l.79): feed it [prior, blur] instead
        ("G", 1, "w", lambda w: np.concatenate([w[:, :, 3:], w[:, :, :3]], 2), "half"),
        # G(18) sees [de_deconv, blurImg, prior] (l.130-131): swap the first two groups
        (
            "G",
            18,
            "w",
            lambda w: np.concatenate([w[:, :, 3:6], w[:, :, :3], w[:, :, 6:]], 2),
            "full",
        ),
        ("P", 7, "upw", lambda w: w[::-1, ::-1], "logits"),  # a flipped transposed conv
        ("G", 17, "w", lambda w: w.transpose(1, 0, 2, 3), "full"),  # H and W swapped
    ]
    assert k + 3 == small_params[("G", 1, "w")].shape[2]
    for net, idx, field, edit, key in changed:
        params = dict(small_params)
        params[(net, idx, field)] = edit(params[(net, idx, field)])
        assert np.abs(reference.forward(params, x)[key] - base[key]).max() > 1e-4, (net, idx)


def test_gan_pair_has_the_same_layout(tmp_path):
    g_path, p_path = synthetic_mat.write_pair(tmp_path, gan=True)
    assert (g_path.name, p_path.name) == ("net_G_P_S_F_GAN.mat", "net_P_P_S_F_GAN.mat")
    params = reference.params_from_structs(*reference.load_nets(g_path, p_path))
    assert reference.check(params)["G_2convImg_6"] == (1, 128, 128, 3)


def test_deblur18_pipeline_on_an_8bit_image(small_params):
    img = RNG.integers(0, 256, (1, 128, 128, 3)).astype(np.uint8)
    out = reference.deblur18(img, small_params)
    x = img / 256.0  # main_deblur18.m l.6-8; l.4 imresize to 128×128 is the identity here
    np.testing.assert_allclose(out, reference.forward(small_params, x)["full"], atol=1e-12)
    small = reference.deblur18(RNG.integers(0, 256, (1, 96, 80, 3)), small_params)
    assert small.shape == (1, 128, 128, 3)  # any input is resized to 128×128 (l.4)
    u8 = reference.to_uint8_like_imwrite(np.array([-0.2, 0.0, 0.5 / 255, 0.999, 1.7]))
    np.testing.assert_array_equal(u8, [0, 0, 1, 255, 255])


@pytest.mark.parametrize("name", sorted(synthetic_mat.BROKEN))
def test_broken_files_are_refused_naming_the_entry(tmp_path, name):
    paths = synthetic_mat.write_broken(tmp_path, name)
    entry = synthetic_mat.BROKEN[name][1]
    with pytest.raises(ValueError, match=re.escape(entry)):
        params = reference.params_from_structs(*reference.load_nets(*paths))
        reference.forward(params, RNG.random((1, 32, 32, 3)))


# --------------------------------------------------------------------------- official code

OFFICIAL_ENV = "FACEDEBLUR_CVPR18_GIT_DIR"  # git dir of joanshen0508/Deep-Semantic-Face-Deblurring


def test_layout_lines_match_the_official_code():
    git_dir = os.environ.get(OFFICIAL_ENV)
    if not git_dir or not pathlib.Path(git_dir).is_dir():
        pytest.skip(f"set {OFFICIAL_ENV} to a git dir of the authors' repository")
    text = subprocess.run(
        ["git", "--git-dir", git_dir, "show", "aea7fe5:DL_deblur_net18.m"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    calls = {"conv": "vl_nnconv(", "convt": "vl_nnconvt(", "bnorm": "vl_nnbnorm(",
             "relu": "vl_nnrelu(", "pool": "vl_nnpool(", "softmax": "vl_nnsoftmax(",
             "concat": "vl_nnconcat(", "add": "+"}  # fmt: skip
    tensors = set(layout.INPUTS) | {op.out for op in layout.GRAPH}
    for op in layout.GRAPH:
        line = text[op.line - 1].replace(" ", "")
        assert re.match(rf"{op.out}=", line) and calls[op.kind] in line, (op.line, line)
        tokens = re.findall(r"[A-Za-z_]\w*", line.split("=", 1)[1])
        assert [t for t in tokens if t in tensors] == list(op.ins), (op.line, line)
        for field in op.fields:
            assert f"net_{op.net}(1,{op.k}).{field}" in line, (op.line, field)
        p = op.pad
        if op.kind == "conv":
            assert f"'pad',[{p}{p}{p}{p}]" in line, op.line
        if op.kind == "convt":
            assert f"'crop',[{p}{p}{p}{p}]" in line and "'upsample',[22]" in line, op.line
    covered = {op.line for op in layout.GRAPH}
    for n, raw in enumerate(text, 1):
        if re.search(r"vl_nn\w+\(", raw) or re.fullmatch(r"\s*\w+\s*=\s*\(\w+\+\w+\);\s*", raw):
            assert n in covered, (n, raw)  # no layer of the file is left out
    assert text[3].replace(" ", "") == "blurImg=imresize(blurImg,[128128]);"
    assert text[4].replace(" ", "") == "blurImg0=imresize(blurImg,[6464]);"
    assert text[180].replace(" ", "") == f"outIm=gather({layout.OUTPUTS['full']});"
