"""Small CelebA trees in the release's layouts, written by the tests themselves.

``img_celeba`` photos are textured backgrounds with bundled sample faces placed at a known
scale, angle and position (``tests/faces/synthetic_photo.py``); ``img_align_celeba`` images
are bundled faces warped into the 178 × 218 frame so that their template points land on
CelebA-like landmark positions, which the landmark file then lists.
"""

import pathlib

import numpy as np
from PIL import Image

from facedeblur_jax.faces import align as fa
from tests.faces.synthetic_photo import background, place_face, placement, sample_face

# (bundled test face, scale, angle, centre) of a photo's faces; face 9 is one dlib misses.
GOOD_FACE = (2, 1.4, 5.0, (200.0, 150.0))
FAILING_PHOTOS = {
    "no face detected": [],
    "no clear main face": [(2, 1.2, 0.0, (110.0, 150.0)), (3, 1.2, 0.0, (290.0, 150.0))],
    "crop off the photo": [(2, 1.4, 0.0, (45.0, 60.0))],
    "face too small": [(2, 0.5, 0.0, (200.0, 150.0))],
}
# CelebA's aligned landmarks of its first image, 000001.jpg (x, y in the 178 × 218 frame).
ALIGNED_POINTS = np.array([[69, 109], [106, 113], [77, 142], [73, 152], [108, 154]], float)


def photo(faces, height: int = 300, width: int = 400) -> np.ndarray:
    """``uint8[H, W, 3]`` with each ``(face index, scale, angle, centre)`` placed on it."""
    out = background(height, width)
    for index, scale, angle, centre in faces:
        out = place_face(out, sample_face(index), placement(scale, angle, centre))
    return out


def good_photo(index: int, shift: float = 0.0) -> np.ndarray:
    """A photo whose one face (bundled test face ``index``) aligns."""
    _, scale, angle, (x, y) = GOOD_FACE
    return photo([(index, scale, angle + shift, (x + 7 * shift, y))])


def aligned_image(index: int) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8[218, 178, 3], f64[5, 2])``: bundled test face ``index`` warped into the
    178 × 218 frame by the similarity that takes its 112-px template nearest to
    :data:`ALIGNED_POINTS`, and where the template points landed (its landmarks)."""
    m = fa.estimate_similarity(fa.template(112), ALIGNED_POINTS)
    warped = fa.warp_affine(sample_face(index), m, (218, 178), order=3, mode="nearest")
    image = np.clip(np.round(warped), 0, 255).astype(np.uint8)
    return image, fa.apply_affine(m, fa.template(112))


def write_jpg(path: pathlib.Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def write_annotation(path: pathlib.Path, rows, header: str | None = None) -> None:
    """A CelebA annotation file: optionally the record count and a header line first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [str(len(rows)), header] if header is not None else []
    lines += [" ".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def write_wild_tree(root: pathlib.Path, identities=(7, 7, 3, 3, 12, 12, 40, 51)) -> dict:
    """``root/img_celeba/00000k.jpg`` + ``root/Anno/identity_CelebA.txt``.

    One good photo per entry of ``identities`` (its identity), then one photo per failure
    of :data:`FAILING_PHOTOS`, a corrupt file and a photo the identity file does not list.
    Returns ``{"good": [names], "failing": {name: reason}, "identity": {name: identity}}``.
    """
    images = root / "img_celeba"
    names, failing, identity_of = [], {}, {}
    k = 0
    for k, identity in enumerate(identities, 1):
        name = f"{k:06d}.jpg"
        write_jpg(images / name, good_photo(1 + (k - 1) % 8, shift=k % 3))
        names.append(name)
        identity_of[name] = str(identity)
    for reason, faces in FAILING_PHOTOS.items():
        k += 1
        name = f"{k:06d}.jpg"
        write_jpg(images / name, photo(faces))
        failing[name] = reason
        identity_of[name] = str(900 + k)
    k += 1
    corrupt = f"{k:06d}.jpg"
    (images / corrupt).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    failing[corrupt] = "unreadable image"
    identity_of[corrupt] = str(900 + k)
    k += 1
    unlisted = f"{k:06d}.jpg"
    write_jpg(images / unlisted, good_photo(2))
    failing[unlisted] = "no identity"
    write_annotation(root / "Anno" / "identity_CelebA.txt", sorted(identity_of.items()))
    return {"good": names, "failing": failing, "identity": identity_of}
