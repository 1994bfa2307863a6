"""``make_source(config.data, split)``: the random-access face source a config names.

Records are the dicts of ``records.py`` (``image``, optional ``labels`` and ``identity``,
``name``). Sources (``config.data.source``):

- ``"folder"``: every image under ``root/<split>`` (``split="all"``: under ``root``), in
  sorted path order; labels from ``label_root/<same relative path>.png`` when that file
  exists; identities from ``root/labels.csv`` (``split,file,identity``) when present
  (``folders.py``).
- ``"faces"``: an aligned face folder with a ``labels.csv`` (the bundled sample's layout):
  the files it lists for the split, with their identities (``folders.py``). ``facedeblur
  data prepare celeba`` writes CelebA in this layout (``celeba.py``; splits ``train``,
  ``val``, ``test``, labels in ``root/labels``).
- ``"sample"``: the 200 faces bundled in ``facedeblur_jax/assets/faces`` (the ``"faces"``
  layout with a fixed root).
- ``"helen"``: Helen in the SmithCVPR2013 layout (``helen.py``).
- ``"celebamask"``: CelebAMask-HQ (``celebamask.py``).
- ``"tfds"``: an ArrayRecord dataset written by ``tfds_builder.py``.

Every source but ``"sample"`` needs ``config.data.root``; there is no default location.
Parsing labels mirror the image tree: for ``root/train/id00_0000.png`` the label map is
``label_root/train/id00_0000.png``; ``label_root=""`` uses ``root/labels`` if it exists.
Files are checked once when the source is built (``validate.py`` describes the policy);
``source[i]`` decodes on demand and raises :class:`ImageError` naming a file that fails.

Imports go one way: this module imports the formats (``folders``, ``helen``,
``celebamask``, ``tfds_builder``), which import ``records``; none imports this module.
"""

from __future__ import annotations

import pathlib

from facedeblur_jax.core import sample_data
from facedeblur_jax.data import celebamask, helen, validate
from facedeblur_jax.data.folders import faces_source, folder_source
from facedeblur_jax.data.labels import NUM_CLASSES

SOURCES = ("sample", "faces", "folder", "helen", "celebamask", "tfds")
ROOT_HINTS = {
    "faces": "the folder holding labels.csv, train/ and test/, e.g. written by 'facedeblur "
    "data prepare celeba --src CELEBA --out DIR'",
    "folder": "the image folder",
    "helen": "the SmithCVPR2013_dataset_resized folder",
    "celebamask": "the CelebAMask-HQ folder",
    "tfds": "the TFDS data_dir the builder wrote",
}


def _default_label_root(root: pathlib.Path) -> pathlib.Path | None:
    return root / "labels" if (root / "labels").is_dir() else None


def make_source(data_cfg, split: str, *, num_classes: int = NUM_CLASSES):
    """The source ``data_cfg.source`` names, for ``split``.

    Args:
      data_cfg: the config's ``data`` section (``facedeblur_jax/configs/paper.py``).
      split: ``"train"``, ``"test"``, ``"val"`` (Helen, CelebAMask-HQ) or ``"all"``.
      num_classes: label values must be ``< num_classes`` (``config.model.num_classes``).

    Returns:
      A grain random-access source (``__len__``, ``__getitem__`` -> record dict).

    Raises:
      FileNotFoundError: the root, a split folder or an index file is missing (named).
      ValueError: an unknown source or a key the source cannot use.
    """
    kind = data_cfg.source
    if kind not in SOURCES:
        raise ValueError(f"unknown data source {kind!r}; expected one of {SOURCES}")
    if data_cfg.verify not in validate.VERIFY_MODES:
        raise ValueError(
            f"data.verify must be one of {validate.VERIFY_MODES}; got {data_cfg.verify!r}"
        )
    root = pathlib.Path(data_cfg.root) if data_cfg.root else None
    label_root = pathlib.Path(data_cfg.label_root) if data_cfg.label_root else None
    common = dict(verify=data_cfg.verify, num_classes=num_classes)
    if kind in ("helen", "celebamask", "tfds") and label_root is not None:
        raise ValueError(f"data.label_root is not used by the {kind!r} source; leave it ''")
    if kind == "sample":
        if root is not None:
            raise ValueError("the 'sample' source has a fixed root; use source='faces' with root")
        root = sample_data.SAMPLE_FACES
        return faces_source(
            root, split, label_root=label_root or _default_label_root(root), **common
        )
    if root is None:
        raise ValueError(
            f"data.root must name the dataset folder for data.source={kind!r} "
            f"({ROOT_HINTS[kind]}); e.g. --config.data.root=DIR"
        )
    if kind == "faces":
        if not root.is_dir():
            raise FileNotFoundError(
                f"data.root {str(root)!r} not found (the folder holding labels.csv, train/ "
                "and test/)"
            )
        return faces_source(
            root, split, label_root=label_root or _default_label_root(root), **common
        )
    if kind == "folder":
        return folder_source(root, split, label_root=label_root, **common)
    if kind == "helen":
        return helen.helen_source(root, split, **common)
    if kind == "celebamask":
        return celebamask.celebamask_source(root, split, **common)
    from facedeblur_jax.data import tfds_builder  # deferred: imports tensorflow_datasets

    return tfds_builder.TfdsSource(root, data_cfg.tfds_name, split, num_classes=num_classes)
